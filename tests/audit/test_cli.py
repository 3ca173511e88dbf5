"""`exchange audit replay|export` against a real broker: exit codes, time filters, errors."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import TopicPartition

from exchange.audit.cli import _kafka_settings
from exchange.cli import main
from exchange.errors import InputError
from exchange.ids import Topic
from tests.audit.history import audit_federation, create_federation_topics, produce
from tests.helpers.broker import auto_creation_applied, create_topics
from tests.helpers.federation import Federation

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


def replay(*args: str, report: Path) -> tuple[int, dict[str, Any]]:
    code = main(["audit", "replay", *args, "--report", str(report)])
    return code, json.loads(report.read_text())


async def _chain(
    bootstrap: str,
    folder: Path,
    *,
    skip_first: bool = False,
    hours_ago: tuple[int, ...] = (3, 2, 1),
) -> tuple[str, Federation, int]:
    """FR alerts 1..n on a fresh prefix, record timestamps ``hours_ago``; (prefix, fed, now ms)."""
    prefix = f"c{datetime.now(UTC).strftime('%H%M%S%f')}"
    fed = audit_federation(folder)
    await create_federation_topics(bootstrap, prefix)
    fr = fed.sender("FR")
    topic = Topic(f"{prefix}.alerts.v1")
    now = datetime.now(UTC)
    # each sealed when it was appended: the replay judges created_at against the append time
    sealed = [fr.alert(now - timedelta(hours=h), topic=topic) for h in hours_ago]
    now_ms = int(now.timestamp() * 1000)
    stamps = [now_ms - h * HOUR_MS for h in hours_ago]
    if skip_first:
        sealed, stamps = sealed[1:], stamps[1:]
    await produce(
        bootstrap, [(topic, s.key, s.value, 0) for s in sealed], timestamps_ms=list(stamps)
    )
    return prefix, fed, now_ms


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


async def test_clean_history_exits_zero(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A clean history: exit 0, status clean, no violations, every record verified."""
    prefix, fed, _ = await _chain(kafka_bootstrap, tmp_path)
    code, report = await asyncio.to_thread(
        replay,
        *("--bootstrap", kafka_bootstrap, "--prefix", prefix, "--trust", str(fed.trust_path)),
        report=tmp_path / "r.json",
    )
    assert code == 0
    assert report["violations"] == []
    assert report["status"] == "clean"
    assert report["counts"]["verified"] == 3


@pytest.mark.parametrize("workers", ["0", "2"])
async def test_since_and_until_filter_by_record_time(
    kafka_bootstrap: str, tmp_path: Path, workers: str
) -> None:
    """--since/--until keep since <= timestamp < until, read by this process or by workers."""
    prefix, fed, now_ms = await _chain(kafka_bootstrap, tmp_path)
    base = ("--bootstrap", kafka_bootstrap, "--prefix", prefix, "--trust", str(fed.trust_path))
    since, until = _iso(now_ms - 5 * HOUR_MS // 2), _iso(now_ms - 3 * HOUR_MS // 2)
    cases = {
        ("--since", since): 2,
        ("--until", until): 2,
        ("--since", since, "--until", until): 1,
    }
    for i, (extra, records) in enumerate(cases.items()):
        code, report = await asyncio.to_thread(
            replay, *base, *extra, "--workers", workers, report=tmp_path / f"{i}.json"
        )
        assert (code, report["counts"]["records"]) == (0, records), extra  # --since anchors
        assert report["source"]["since"] == (since if "--since" in extra else None)


async def test_chain_not_starting_at_one_is_a_gap_without_since(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Replayed from the beginning, a chain whose sequence 1 is missing has a gap from 1."""
    prefix, fed, _ = await _chain(kafka_bootstrap, tmp_path, skip_first=True)
    code, report = await asyncio.to_thread(
        replay,
        *("--bootstrap", kafka_bootstrap, "--prefix", prefix, "--trust", str(fed.trust_path)),
        *("--workers", "0"),
        report=tmp_path / "r.json",
    )
    assert code == 1
    [v] = report["violations"]
    assert (v["kind"], v["offset"]) == ("sequence_gap", 0)
    assert "sequence 1 of FR" in v["reason"]


def test_bad_trust_list_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A trust list that does not verify: exit 2 with a message, before any connection."""
    fed = audit_federation(tmp_path)
    fed.trust_path.write_bytes(fed.trust_path.read_bytes()[:-3] + b"xyz")
    code = main(["audit", "replay", "--bootstrap", "127.0.0.1:1", "--trust", str(fed.trust_path)])
    assert code == 2
    assert "bad_trust_list" in capsys.readouterr().err


def test_trust_list_under_another_root_key_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--root-key naming a key that did not sign the trust list: exit 2."""
    fed = audit_federation(tmp_path / "a")
    other = audit_federation(tmp_path / "b")
    code = main(
        [
            "audit",
            "replay",
            "--archive",
            str(tmp_path / "none.avro"),
            "--trust",
            str(fed.trust_path),
            "--root-key",
            str(other.root_public_path),
        ]
    )
    assert code == 2
    assert "root key" in capsys.readouterr().err


def test_unreachable_broker_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A refused connection: exit 2 naming the cluster."""
    fed = audit_federation(tmp_path)
    code = main(["audit", "replay", "--bootstrap", "127.0.0.1:1", "--trust", str(fed.trust_path)])
    assert code == 2
    assert "connecting to 127.0.0.1:1" in capsys.readouterr().err


async def _silent_server() -> AsyncIterator[int]:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_broker_that_never_answers_times_out_with_exit_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A peer that accepts but never answers: exit 2 after --timeout, saying so."""
    fed = audit_federation(tmp_path)
    async for port in _silent_server():
        args = ["audit", "replay", "--bootstrap", f"127.0.0.1:{port}", "--timeout", "1"]
        code = await asyncio.to_thread(main, [*args, "--trust", str(fed.trust_path)])
        assert code == 2
        assert "no answer within 1 s" in capsys.readouterr().err


async def test_missing_named_topic_exits_two_and_is_not_created(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --topic that does not exist: exit 2 naming it; the audit does not create it."""
    fed = audit_federation(tmp_path)
    missing = f"no-such-topic-{uuid.uuid4().hex[:8]}"
    args = ["audit", "replay", "--bootstrap", kafka_bootstrap, "--topic", missing]
    code = await asyncio.to_thread(main, [*args, "--trust", str(fed.trust_path)])
    assert code == 2
    assert f"{missing}: no such topic" in capsys.readouterr().err
    control = f"auto-created-{uuid.uuid4().hex[:8]}"
    auto_create = await auto_creation_applied(kafka_bootstrap, control)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        topics = await admin.list_topics()
    finally:
        await admin.close()
    assert missing not in topics
    assert control in topics or not auto_create


def test_missing_archive_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--archive naming no file: exit 2 naming it."""
    fed = audit_federation(tmp_path)
    code = main(
        [
            "audit",
            "replay",
            "--archive",
            str(tmp_path / "gone.avro"),
            "--trust",
            str(fed.trust_path),
        ]
    )
    assert code == 2
    assert "gone.avro" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["audit", "replay", "--bootstrap", "127.0.0.1:1"],  # no --trust
        ["audit", "replay", "--trust", "t", "--bootstrap", "h:1", "--archive", "a"],  # both
        ["audit", "replay", "--trust", "t", "--archive", "a", "--since", "yesterday"],
    ],
)
def test_usage_errors_exit_two(args: list[str]) -> None:
    """Missing or conflicting options and unparsable times are usage errors: exit 2."""
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2


def test_since_after_until_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--since not before --until: exit 2 naming --until."""
    fed = audit_federation(tmp_path)
    code = main(
        [
            "audit",
            "replay",
            "--bootstrap",
            "127.0.0.1:1",
            "--trust",
            str(fed.trust_path),
            "--since",
            "2026-02-01",
            "--until",
            "2026-01-01",
        ]
    )
    assert code == 2
    assert "--until" in capsys.readouterr().err


def test_subprocess_exit_code(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The console script itself exits with the replay's status (subprocess)."""
    prefix, fed, _ = asyncio.run(_chain(kafka_bootstrap, tmp_path, skip_first=True))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "exchange.cli",
            "audit",
            "replay",
            "--bootstrap",
            kafka_bootstrap,
            "--prefix",
            prefix,
            "--trust",
            str(fed.trust_path),
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "sequence_gap" in done.stdout


async def test_retention_truncated_topic_anchors_chains(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Records deleted from a partition's start (retention): no false gap, topic named."""
    prefix, fed, _ = await _chain(kafka_bootstrap, tmp_path)
    topic = f"{prefix}.alerts.v1"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(1)})
    finally:
        await admin.close()
    code, report = await asyncio.to_thread(
        replay,
        *("--bootstrap", kafka_bootstrap, "--prefix", prefix, "--trust", str(fed.trust_path)),
        *("--workers", "0"),
        report=tmp_path / "r.json",
    )
    assert code == 0
    assert report["counts"]["records"] == 2
    assert report["checks"]["anchored_topics"] == [topic]
    assert report["source"]["offsets"][topic]["0"] == {"start": 1, "end": 3}


async def test_export_since_then_replay_archive_is_anchored(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """An archive exported --since replays offline with chains anchored, exit 0."""
    prefix, fed, now_ms = await _chain(kafka_bootstrap, tmp_path)
    out = tmp_path / "since.avro"
    since = _iso(now_ms - 5 * HOUR_MS // 2)
    export = ["audit", "export", "--bootstrap", kafka_bootstrap, "--prefix", prefix]
    code = await asyncio.to_thread(main, [*export, "--since", since, "--out", str(out)])
    assert code == 0
    code, report = await asyncio.to_thread(
        replay,
        *("--archive", str(out), "--trust", str(fed.trust_path), "--workers", "0"),
        report=tmp_path / "r.json",
    )
    assert (code, report["counts"]["records"]) == (0, 2)
    assert report["source"]["export"]["since"] == since


def test_prefix_with_no_topics_exits_two(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A prefix none of whose federation topics exist: exit 2, not a clean empty replay."""
    fed = audit_federation(tmp_path)
    code = main(
        [
            *("audit", "replay", "--bootstrap", kafka_bootstrap, "--trust", str(fed.trust_path)),
            *("--prefix", f"none{uuid.uuid4().hex[:8]}"),
        ]
    )
    assert code == 2
    assert "alerts.v1: no such topic" in capsys.readouterr().err


def test_malformed_bootstrap_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--bootstrap that is not HOST:PORT: exit 2 naming the option."""
    fed = audit_federation(tmp_path)
    code = main(["audit", "replay", "--bootstrap", "nonsense", "--trust", str(fed.trust_path)])
    assert code == 2
    assert "--bootstrap: expected HOST:PORT" in capsys.readouterr().err


async def test_missing_default_topics_are_listed_not_fatal(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """With only some federation topics on the cluster, the others are listed as missing."""
    prefix = f"p{uuid.uuid4().hex[:10]}"
    await create_topics(kafka_bootstrap, [f"{prefix}.alerts.v1"], 1)
    fed = audit_federation(tmp_path)
    code, report = await asyncio.to_thread(
        replay,
        *("--bootstrap", kafka_bootstrap, "--prefix", prefix, "--trust", str(fed.trust_path)),
        *("--workers", "0"),
        report=tmp_path / "r.json",
    )
    assert code == 0
    assert report["source"]["missing_topics"] == [
        f"{prefix}.{k}.v1" for k in ("blacklist", "indicators", "pseudonyms")
    ]


async def test_kafka_config_file_reaches_the_cluster_and_outputs_are_private(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """--kafka-config (a node-style TOML [kafka] table with topic_prefix) replaces
    --bootstrap/--prefix; the JSON and HTML reports and an export are created mode 0600."""
    prefix, fed, _ = await _chain(kafka_bootstrap, tmp_path)
    config = tmp_path / "kafka.toml"
    config.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka_bootstrap}"\ntopic_prefix = "{prefix}"\n'
        'client_id = "auditor-test"\n'
    )
    html, out = tmp_path / "r.html", tmp_path / "all.avro"
    code, report = await asyncio.to_thread(
        replay,
        *("--kafka-config", str(config), "--trust", str(fed.trust_path), "--workers", "0"),
        *("--html", str(html)),
        report=tmp_path / "r.json",
    )
    assert (code, report["counts"]["verified"]) == (0, 3)
    assert report["source"]["bootstrap"] == kafka_bootstrap
    export = ["audit", "export", "--kafka-config", str(config), "--out", str(out)]
    assert await asyncio.to_thread(main, export) == 0
    for path in (tmp_path / "r.json", html, out):
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_kafka_config_secrets_come_from_the_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SASL password may come from EXCHANGE_KAFKA__SASL_PASSWORD; there is no option for
    it on the command line; PLAIN over SASL_PLAINTEXT is refused as for a node."""
    config = tmp_path / "kafka.toml"
    config.write_text(
        '[kafka]\nbootstrap_servers = "k1.example:9093"\nsecurity_protocol = "SASL_SSL"\n'
        'sasl_mechanism = "SCRAM-SHA-512"\nsasl_username = "auditor"\n'
    )
    args = argparse.Namespace(kafka_config=config, bootstrap=None, prefix=None)
    monkeypatch.setenv("EXCHANGE_KAFKA__SASL_PASSWORD", "from-the-environment")
    settings = _kafka_settings(args)
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == "from-the-environment"
    assert (args.bootstrap, args.prefix) == ("k1.example:9093", "ncp")
    monkeypatch.setenv("EXCHANGE_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("EXCHANGE_KAFKA__SASL_MECHANISM", "PLAIN")
    with pytest.raises(InputError) as refused:
        _kafka_settings(argparse.Namespace(kafka_config=config, bootstrap=None, prefix=None))
    assert "kafka.sasl_mechanism" in str(refused.value)
    with pytest.raises(SystemExit):
        main(["audit", "export", "--kafka-config", str(config), "--sasl-password", "x"])
