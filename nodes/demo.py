"""``make demo``: three Member States' nodes exchange alerts over a real Kafka broker.

1. uses the broker at ``KAFKA_BOOTSTRAP_SERVERS`` or 127.0.0.1:9092, starting the local
   one (``deploy/kafka/kafka.sh start``) when none answers - and stopping it at the end
   only if the demo started it;
2. ``exchange federation init`` FR, DE, NL into a temporary folder, with a topic prefix of
   its own so it never mixes with another run;
3. runs ``exchange node run`` for each node as a child process;
4. FR publishes three alerts for every member and one TLP:RED alert for DE only;
   NL publishes one alert;
5. waits until every node stored what it should, prints what each stored (DE has the RED
   alert, NL does not);
6. the joint blacklist (:mod:`nodes.blacklist.demo`): FR and NL list a site,
   DE exports it as RPZ under a two-member rule, FR removes it, DE's next export drops it;
7. pseudonyms (:mod:`nodes.pseudonyms.demo`): FR asks about a handle DE holds, DE
   answers HIT, NL NO_HIT, DE's operator approves the details; then stops the nodes
   with SIGTERM (each must exit 0).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from nodes.blacklist.demo import run_blacklist_demo
from nodes.config import load_config
from nodes.pseudonyms import demo as pseudonym_demo
from nodes.stats.demo import indicator_table
from nodes.store.base import StoredRecord
from nodes.store.opened import opened_store

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"
NODES = ("FR", "DE", "NL")
TIMEOUT_S = 90.0

FR_ALERTS = [
    {
        "payload": {
            "title": "Fake web shop selling concert tickets",
            "category": "FRAUDULENT_SALES",
            "indicators": [{"type": "DOMAIN", "value": "tickets-cheap.example"}],
            "description": "Takes card payments, never delivers; 40 complaints this week.",
        },
        "handling": {"tlp": "CLEAR", "code": "H0"},
    },
    {
        "payload": {
            "title": "Phishing kit impersonating a national bank",
            "category": "IDENTITY_THEFT",
            "indicators": [{"type": "URL", "value": "https://login-bank.example/secure"}],
            "description": "Harvests online-banking credentials.",
        },
        "handling": {"tlp": "GREEN", "code": "H0"},
    },
    {
        "payload": {
            "title": "Ransomware payments wallet",
            "category": "ATTACK_ON_INFORMATION_SYSTEMS",
            "indicators": [
                {"type": "CRYPTO_WALLET", "value": "bc1qdemo0wallet0address", "currency": "BTC"}
            ],
            "description": "Wallet named in ransom notes of a hospital intrusion.",
        },
        "handling": {"tlp": "GREEN", "code": "H1"},
    },
    {
        "payload": {
            "title": "Suspect identified in joint investigation (for DE only)",
            "category": "FINANCIAL_OFFENCE",
            "indicators": [{"type": "EMAIL", "value": "suspect@mail.example"}],
            "description": "Restricted: shared with DE under the joint investigation team.",
        },
        "handling": {"tlp": "RED", "code": "H2"},
        "recipients": ["DE"],
    },
]


def say(text: str) -> None:
    print(text, flush=True)


def attempt(step: str, run: Callable[[], T]) -> T | None:
    """``run()``, or None after saying why it failed: one step's failure must not hide the
    daemons' logs (printed at the end) behind a traceback."""
    try:
        return run()
    except Exception as exc:
        say(f"{step}: FAILED: {type(exc).__name__}: {exc}")
        return None


def broker_answers(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def exchange(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "exchange.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"exchange {' '.join(args)} failed:\n{done.stderr}")
    return done


def alert_lines(items: list[dict[str, Any]], country: str) -> str:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    lines = []
    for item in items:
        payload = {
            "alert_id": str(uuid.uuid4()),
            "observed_at": now,
            "reporting_source": "CYBER_PATROL",
            "language": "en",
            "country_of_origin": country,
            **item["payload"],
        }
        lines.append(json.dumps({**item, "payload": payload}))
    return "\n".join(lines) + "\n"


async def stored_alerts(config_path: Path) -> list[StoredRecord]:
    async with opened_store(load_config(config_path).store.url) as store:
        found = await store.list_records(limit=1000)
    return [r for r in found if r.message_type == "OffenceAlert"]


def wait_for_stores(
    configs: dict[str, Path], expected: dict[str, int]
) -> dict[str, list[StoredRecord]]:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        found = {n: asyncio.run(stored_alerts(p)) for n, p in configs.items()}
        if all(len(found[n]) >= expected[n] for n in configs):
            return found
        if time.monotonic() > deadline:
            counts = {n: len(v) for n, v in found.items()}
            raise TimeoutError(f"nodes stored {counts}, expected {expected}")
        time.sleep(0.3)


def print_table(found: dict[str, list[StoredRecord]]) -> None:
    say("")
    say(f"{'node':<5} {'from':<5} {'TLP':<6} {'code':<5} {'category':<30} title")
    say("-" * 110)
    for node in NODES:
        for r in sorted(found[node], key=lambda r: (r.sender, r.created_at, r.sequence)):
            title = str(r.payload.get("title", ""))
            category = r.category or "-"
            say(f"{node:<5} {r.sender:<5} {r.tlp:<6} {r.handling_code:<5} {category:<30} {title}")
        say("-" * 110)


def main() -> int:
    started_at = time.monotonic()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip() or "127.0.0.1:9092"
    started_broker = False
    if not broker_answers(bootstrap):
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            say(f"no broker answers at {bootstrap} (KAFKA_BOOTSTRAP_SERVERS)")
            return 2
        say("starting the local Kafka broker (deploy/kafka/kafka.sh start) ...")
        subprocess.run([str(KAFKA_SH), "start"], check=True, timeout=300)
        started_broker = True
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs: list[IO[bytes]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="ncp-demo-") as tmp:
            folder = Path(tmp) / "federation"
            prefix = f"demo{uuid.uuid4().hex[:8]}"
            say(f"federation init FR,DE,NL in {folder} (topics {prefix}.*.v1, broker {bootstrap})")
            exchange(
                "federation",
                "init",
                str(folder),
                "--nodes",
                ",".join(NODES),
                "--prefix",
                prefix,
                "--bootstrap",
                bootstrap,
            )
            configs = {n: folder / n / "node.toml" for n in NODES}
            env = {**os.environ, "EXCHANGE_LOG__FORMAT": "json", "EXCHANGE_HTTP__LISTEN": ""}
            for node, config in configs.items():
                log = (folder / node / "node.log").open("wb")
                logs.append(log)
                processes[node] = subprocess.Popen(
                    [sys.executable, "-m", "exchange.cli", "node", "run", "--config", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            say("started the FR, DE and NL daemons (exchange node run)")
            fr_file = folder / "fr-alerts.jsonl"
            fr_file.write_text(alert_lines(FR_ALERTS, "FR"))
            say(
                exchange(
                    "alert", "publish", "--config", str(configs["FR"]), "--jsonl", str(fr_file)
                ).stdout.rstrip()
            )
            say(
                exchange(
                    "alert",
                    "publish",
                    "--config",
                    str(configs["NL"]),
                    "--title",
                    "Online shop selling counterfeit medicines",
                    "--category",
                    "FRAUDULENT_SALES",
                    "--domain",
                    "pharma-deals.example",
                    "--description",
                    "Ships falsified medicines across the EU.",
                    "--tlp",
                    "GREEN",
                    "--handling-code",
                    "H0",
                    "--source",
                    "MEMBER_OF_PUBLIC",
                ).stdout.rstrip()
            )
            # FR cannot read its own RED alert (encrypted for DE only): 3 + NL's 1.
            expected = {"FR": 4, "DE": 5, "NL": 4}
            found = wait_for_stores(configs, expected)
            print_table(found)
            red_at_de = any(r.tlp == "RED" for r in found["DE"])
            red_at_nl = any(r.tlp == "RED" for r in found["NL"])
            say(f"DE holds the TLP:RED alert: {red_at_de}; NL holds it: {red_at_nl}")
            say(attempt("statistics", lambda: indicator_table(configs)) or "")
            blacklist_ok = bool(
                attempt("joint blacklist", lambda: run_blacklist_demo(folder, configs))
            )
            pseudonyms_ok = bool(
                attempt(
                    "pseudonyms",
                    lambda: pseudonym_demo.run(folder, configs, bootstrap, prefix, exchange, say),
                )
            )
            codes = stop_all(processes)
            say(f"daemons stopped with SIGTERM, exit codes {codes}")
            say("\nan auditor replays the topics from the bus alone (exchange audit replay):")
            audit = exchange(
                "audit",
                "replay",
                "--bootstrap",
                bootstrap,
                "--trust",
                str(folder / "trust.list"),
                "--prefix",
                prefix,
                "--workers",
                "1",
                check=False,
            )
            say(audit.stdout.rstrip())
            say(f"audit exit code {audit.returncode} (0: every signature and chain checks out)")
            ok = (
                red_at_de
                and blacklist_ok
                and not red_at_nl
                and all(c == 0 for c in codes.values())
                and audit.returncode == 0
                and pseudonyms_ok
            )
            if not ok:
                for node in NODES:
                    say(f"--- {node} log tail ---")
                    say("\n".join((folder / node / "node.log").read_text().splitlines()[-15:]))
            say(f"demo {'succeeded' if ok else 'FAILED'} in {time.monotonic() - started_at:.1f} s")
            return 0 if ok else 1
    finally:
        stop_all(processes)
        for handle in logs:
            handle.close()
        if started_broker:
            say("stopping the broker the demo started")
            subprocess.run([str(KAFKA_SH), "stop"], check=False, timeout=120)


def stop_all(processes: dict[str, subprocess.Popen[bytes]]) -> dict[str, int | None]:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    codes: dict[str, int | None] = {}
    for node, process in processes.items():
        try:
            codes[node] = process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            codes[node] = process.wait()
    return codes


if __name__ == "__main__":
    sys.exit(main())
