"""The demo's statistics step: every node publishes this month's indicator, FR prints the
federation's table (``exchange stats publish`` and ``report``, as an operator would)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from exchange.stats.period import PeriodKind, period_containing
from nodes.config import load_config
from nodes.stats.report import load_report
from nodes.store.opened import opened_store


async def _members_in_force(config_path: Path) -> int:
    async with opened_store(load_config(config_path).store.url) as store:
        return len((await load_report(store, now=datetime.now(UTC))).current)


def indicator_table(configs: dict[str, Path], timeout_s: float = 60.0) -> str:
    """Publish (threshold 0 for the demo: exact counts) and return FR's report table."""
    month = period_containing(datetime.now(UTC).date(), PeriodKind.MONTH).label
    env = {**os.environ, "EXCHANGE_STATS__THRESHOLD": "0"}
    for config in configs.values():
        subprocess.run(
            [sys.executable, "-m", "exchange.cli", "stats", "publish", "--config", str(config),
             "--period", month],
            check=True, capture_output=True, env=env, timeout=120,
        )  # fmt: skip
    reader = next(iter(configs.values()))
    deadline = time.monotonic() + timeout_s
    while asyncio.run(_members_in_force(reader)) < len(configs):
        if time.monotonic() > deadline:
            return "statistics: not every member's indicator arrived in time"
        time.sleep(0.3)
    done = subprocess.run(
        [sys.executable, "-m", "exchange.cli", "stats", "report", "--config", str(reader)],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return f"statistical indicators for {month} (exchange stats report):\n{done.stdout.rstrip()}"
