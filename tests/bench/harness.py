"""The benchmark harness behind ``make bench`` (``python -m tests.bench [NAME ...]``).

Writing a benchmark
-------------------
Add ``tests/bench/bench_<name>.py`` (pytest never collects it: it collects only
``test_*.py``) with one entry point, sync or async::

    async def run(ctx: BenchContext) -> list[Figure]: ...

``ctx.bootstrap`` is a running broker ("host:port"), found as the test fixture finds
one (``KAFKA_BOOTSTRAP_SERVERS``, testcontainers, else the local ``kafka.sh`` broker,
started and stopped by the harness when it was not running). Name every topic from
``ctx.topic(...)`` so runs never collide. Size the work with ``ctx.n(100_000)``,
which applies ``BENCH_SCALE`` (default 1.0; e.g. ``BENCH_SCALE=0.1`` for a quick run).

Each :class:`Figure` is one number. A throughput figure names its baseline, measured
in the same run (e.g. raw aiokafka from :mod:`tests.bench.bench_raw_kafka`), and the
table prints ``value / baseline``: absolute figures drift between machines and runs,
ratios measured in one run do not. Latency, memory and other figures without a
baseline leave the baseline empty; their ratio column is blank.

Running
-------
``python -m tests.bench`` runs every module in name order (``bench_raw_kafka`` first,
as the others compare against it); ``python -m tests.bench raw_kafka seal`` runs those
only. The harness prints one table and writes every figure, with the machine (CPU
count, Python version, platform) and the date, to ``bench-results.json``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import pkgutil
import platform
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from tests.helpers.broker import BrokerUnavailableError, acquire_broker

RESULTS = Path("bench-results.json")
PACKAGE = "tests.bench"


class Figure(NamedTuple):
    """One measured number, and (for throughput) the baseline it is compared with."""

    name: str
    value: float
    unit: str
    baseline_name: str | None = None
    baseline_value: float | None = None

    @property
    def ratio(self) -> float | None:
        """``value / baseline_value``, or None without a baseline."""
        if self.baseline_value is None or self.baseline_value == 0:
            return None
        return self.value / self.baseline_value


@dataclass
class BenchContext:
    """What a benchmark gets: a broker, a unique topic prefix and the scale factor."""

    bootstrap: str
    prefix: str = field(default_factory=lambda: f"bench{uuid.uuid4().hex[:10]}")
    scale: float = 1.0

    def n(self, full: int, minimum: int = 100) -> int:
        """``full`` scaled by ``BENCH_SCALE``, never below ``minimum``."""
        return max(minimum, int(full * self.scale))

    def topic(self, name: str) -> str:
        """A topic name unique to this run: ``<prefix>.<name>``."""
        return f"{self.prefix}.{name}"


Run = Callable[[BenchContext], "Sequence[Figure] | Awaitable[Sequence[Figure]]"]


def discover(names: Sequence[str] = ()) -> list[str]:
    """The bench module names (``bench_*``) in name order, restricted to ``names`` if given."""
    here = Path(__file__).parent
    found = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if not names:
        return found
    wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in names]
    unknown = [n for n in wanted if n not in found]
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(found)}")
    return wanted


def run_module(name: str, ctx: BenchContext) -> list[Figure]:
    """Import ``tests.bench.<name>`` and run its ``run(ctx)``, awaiting it when async."""
    module = importlib.import_module(f"{PACKAGE}.{name}")
    run: Run = module.run
    result = run(ctx)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return [Figure(*f) for f in result]


async def _await(result: Awaitable[Sequence[Figure]]) -> Sequence[Figure]:
    return await result


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(figures: Sequence[Figure]) -> str:
    """The figures as one aligned text table."""
    head = ("figure", "value", "unit", "baseline", "baseline value", "ratio")
    rows = [head] + [
        (
            f.name,
            _fmt(f.value),
            f.unit,
            f.baseline_name or "",
            _fmt(f.baseline_value),
            "" if f.ratio is None else f"{f.ratio:.2f}",
        )
        for f in figures
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for k, r in enumerate(rows):
        cells = [
            c.ljust(w) if i in (0, 2, 3) else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks named in ``argv`` (all when none), print the table, write the JSON."""
    names = discover(sys.argv[1:] if argv is None else argv)
    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    if scale <= 0:
        raise SystemExit(f"BENCH_SCALE must be > 0, got {scale}")
    try:
        lease = acquire_broker()
    except BrokerUnavailableError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"broker {lease.bootstrap} ({lease.source}); BENCH_SCALE={scale}", file=sys.stderr)
    started = datetime.now(UTC)
    figures: list[Figure] = []
    timings: dict[str, float] = {}
    try:
        ctx = BenchContext(bootstrap=lease.bootstrap, scale=scale)
        for name in names:
            print(f"running {name} ...", file=sys.stderr)
            t0 = time.perf_counter()
            figures.extend(run_module(name, ctx))
            timings[name] = round(time.perf_counter() - t0, 2)
    finally:
        lease.release()
    print(table(figures))
    RESULTS.write_text(
        json.dumps(
            {
                "date": started.isoformat(timespec="seconds"),
                "machine": machine(),
                "scale": scale,
                "broker": lease.source,
                "modules": timings,
                "figures": [{**f._asdict(), "ratio": f.ratio} for f in figures],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.resolve()}", file=sys.stderr)
    return 0
