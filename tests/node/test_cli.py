"""`exchange node ...` and `exchange alert ...` as an operator runs them: real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from exchange.cli import build_parser
from nodes.config import load_config
from nodes.publisher import Publisher
from nodes.store.base import AuditAction, open_store
from tests.helpers.federation import Federation, alert_data


def exchange(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exchange.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


async def outbox_depth(config: Path) -> int:
    store = open_store(load_config(config).store.url)
    await store.open()
    try:
        return await store.outbox_depth()
    finally:
        await store.close()


def test_node_and_alert_groups_are_registered() -> None:
    """The exchange script offers `node run/status` and `alert publish/list/retract`."""
    parser = build_parser()
    assert parser.parse_args(["node", "run", "--config", "x.toml"]).func.__name__ == "_run"
    assert parser.parse_args(["node", "status", "-c", "x.toml"]).func.__name__ == "_status"
    for action in ("publish", "list"):
        assert parser.parse_args(["alert", action, "-c", "x"]).func.__name__ == f"_{action}"


def test_node_run_with_a_bad_config_lists_every_problem(tmp_path: Path) -> None:
    """`exchange node run` on a bad config prints each problem as path: reason and exits 2."""
    config = tmp_path / "node.toml"
    config.write_text(
        'node_id = "fr"\n[keys]\nsigning_key = "nope.key"\n[store]\nurl = "mysql://x"\n'
    )
    done = exchange("node", "run", "--config", str(config))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert any(line.startswith("error: node_id:") for line in lines)
    assert f"error: keys.signing_key: file not found: {tmp_path / 'nope.key'}" in lines
    assert any(line.startswith("error: keys.encryption_key:") for line in lines)
    assert any(line.startswith("error: kafka:") for line in lines)
    assert any(line.startswith("error: store.url:") for line in lines)


def test_invalid_alert_options_are_refused_with_field_and_reason(federation: Federation) -> None:
    """A bad category, indicator or recipient is named; nothing is queued."""
    config = str(federation.config_path("FR"))
    done = exchange(
        "alert", "publish", "-c", config, "--title", "t", "--category", "JAYWALKING",
        "--hash", "nothex", "--tlp", "RED",
    )  # fmt: skip
    assert done.returncode == 2
    assert "error: --hash: expected PREFIX:VALUE" in done.stderr
    done = exchange(
        "alert", "publish", "-c", config, "--title", "t", "--category", "JAYWALKING",
        "--domain", "x.example", "--tlp", "RED",
    )  # fmt: skip
    assert done.returncode == 2
    assert "error: payload.category:" in done.stderr
    assert "error: recipients: TLP:RED needs named recipients" in done.stderr
    assert asyncio.run(outbox_depth(federation.config_path("FR"))) == 0


def test_jsonl_publish_is_all_or_nothing(federation: Federation, tmp_path: Path) -> None:
    """One bad line in a JSONL file refuses the whole file, naming each bad line."""
    good = {"payload": alert_data("good"), "handling": {"tlp": "GREEN", "code": "H0"}}
    bad = {"payload": {**alert_data("bad"), "category": "NOPE"}, "recipients": ["XX"]}
    path = tmp_path / "alerts.jsonl"
    path.write_text("\n".join([json.dumps(good), json.dumps(bad), "{not json"]) + "\n")
    done = exchange(
        "alert", "publish", "-c", str(federation.config_path("NL")), "--jsonl", str(path)
    )
    assert done.returncode == 2
    assert "error: line 2: payload.category:" in done.stderr
    assert "error: line 2: recipients: XX" in done.stderr
    assert "error: line 3: json: not JSON" in done.stderr
    assert asyncio.run(outbox_depth(federation.config_path("NL"))) == 0


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.integration
def test_daemon_process_publishes_cli_alerts_and_stops_on_sigterm(
    live_federation: Federation,
) -> None:
    """A running `exchange node run` sends what `alert publish` queued; `alert list` shows it,
    audited as a consultation; `node status` shows no lag; `alert retract` withdraws it;
    SIGTERM ends the daemon with exit 0."""
    config = str(live_federation.config_path("FR"))
    env = {**os.environ, "EXCHANGE_HTTP__LISTEN": "", "EXCHANGE_PUBLISHER__POLL_INTERVAL_MS": "50"}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "exchange.cli", "node", "run", "--config", config],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        queued = exchange(
            "alert", "publish", "-c", config, "--title", "Wallet of an extortion ring",
            "--category", "FINANCIAL_OFFENCE", "--wallet", "BTC:bc1qexample0wallet0address",
            "--hash", f"SHA256:{'ab' * 32}", "--handle", "forum:extortr", "--tlp", "GREEN",
            "--handling-code", "H0", "--description", "Ransom payments go to this wallet.",
        )  # fmt: skip
        assert queued.returncode == 0, queued.stderr
        deadline = time.monotonic() + 30
        rows: list[dict[str, Any]] = []
        while not rows and time.monotonic() < deadline:
            time.sleep(0.3)
            rows = _json(exchange("alert", "list", "-c", config, "--json", "--actor", "cli:test"))
        (row,) = rows
        assert row["payload"]["title"] == "Wallet of an extortion ring"
        kinds = {i["type"]: i for i in row["payload"]["indicators"]}
        assert kinds["CRYPTO_WALLET"]["currency"] == "BTC"
        assert kinds["FILE_HASH"]["hash_algorithm"] == "SHA256"
        assert kinds["ONLINE_HANDLE"]["platform"] == "forum"
        status = _json(exchange("node", "status", "-c", config, "--json"))
        assert status["outbox_depth"] == 0
        assert status["lag"][f"{live_federation.prefix}.alerts.v1"] == 0
        retracted = exchange("alert", "retract", "-c", config, row["message_id"], "--note", "typo")
        assert retracted.returncode == 0, retracted.stderr
        for _ in range(100):
            if not _json(exchange("alert", "list", "-c", config, "--json", "--actor", "cli:test")):
                break
            time.sleep(0.3)
        everything = ["alert", "list", "-c", config, "--json", "--include-withdrawn"]
        withdrawn = _json(exchange(*everything, "--actor", "cli:test"))
        assert [r["message_id"] for r in withdrawn] == [row["message_id"]]
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=40)
    assert daemon.returncode == 0, stderr.decode()

    async def consultations() -> list[Any]:
        store = open_store(load_config(config).store.url)
        await store.open()
        try:
            entries = await store.audit_entries()
        finally:
            await store.close()
        return [e.event for e in entries if e.event.action is AuditAction.CONSULTATION]

    events = asyncio.run(consultations())
    assert events
    assert {e.actor for e in events} == {"cli:test"}
    # Every listing is a consultation, also the polls that found nothing yet.
    assert [row["message_id"]] in [e.details["message_ids"] for e in events]


def test_publish_prints_the_message_id_that_will_travel(
    federation: Federation, tmp_path: Path
) -> None:
    """`alert publish` prints the message id it stored, and the publisher seals under it."""
    url = f"sqlite:///{tmp_path / 'fr.db'}"
    config_path = federation.config_path("FR")
    done = exchange(
        "alert", "publish", "-c", str(config_path), "--title", "Fake shop",
        "--category", "FRAUDULENT_SALES", "--domain", "shop.example", "--tlp", "GREEN",
        "--handling-code", "H0", "--description", "Takes payment, never delivers.",
        env={"EXCHANGE_STORE__URL": url},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = UUID(done.stdout.split()[2])

    async def seal_it() -> tuple[UUID | None, UUID | None]:
        store = open_store(url)
        await store.open()
        try:
            (pending,) = await store.pending(10)
            config = load_config(config_path)
            publisher = Publisher(
                node=config.node,
                store=store,
                kafka=config.kafka.settings(),
                signer=federation.signer("FR"),
                trust=federation.trust,
                config=config.publisher,
            )
            (sealed,) = await publisher.sign_pending()
            return pending.message_id, sealed.message_id
        finally:
            await store.close()

    assert asyncio.run(seal_it()) == (printed, printed)
