"""The auditor's replay against a real broker: injected violations are each found, in place.

One history (built once for the module) holds a clean chain per member and one
injected violation of each kind, written with raw aiokafka into explicit partitions;
each test checks one violation: its kind, topic, partition, offset and reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from exchange.chain import Link
from exchange.cli import main
from exchange.ids import KeyId, NodeId, Topic
from exchange.keys import SigningKey
from exchange.models import Handling, HandlingCode, InformationReliability, SourceReliability, Tlp
from exchange.seal import Sealed, seal
from tests.audit.history import (
    Placed,
    audit_federation,
    create_federation_topics,
    forge,
    produce,
    resign,
)
from tests.helpers import federation as helpers
from tests.helpers.broker import unique_prefix
from tests.helpers.federation import Federation, make_alert

pytestmark = pytest.mark.integration

RED = Handling(
    tlp=Tlp.RED,
    code=HandlingCode.H0,
    source_reliability=SourceReliability.A,
    information_reliability=InformationReliability.ONE,
)


@dataclass
class History:
    """The injected history, where each injected record landed, and the replay's report."""

    prefix: str
    fed: Federation
    at: dict[str, Placed]
    report: dict[str, Any]
    exit_code: int
    folder: Path

    def found(self, kind: str) -> list[dict[str, Any]]:
        return [v for v in self.report["violations"] if v["kind"] == kind]

    def at_place(self, name: str) -> list[dict[str, Any]]:
        p = self.at[name]
        return [
            v
            for v in self.report["violations"]
            if (v["topic"], v["partition"], v["offset"]) == (p.topic, p.partition, p.offset)
        ]


def _hide_recipient(fed: Federation, plain: Sealed) -> Sealed:
    """FR's next record sealed for DE and NL, then re-signed listing DE only: NL reads it too."""
    fr = fed.sender("FR")
    for_both = seal(
        make_alert(plain.envelope.created_at),
        signer=fr.key,
        sender=NodeId("FR"),
        topic=plain.envelope.topic,
        link=Link(plain.envelope.sequence, plain.envelope.previous_hash),
        handling=helpers.handling(),
        recipients=[NodeId("DE"), NodeId("NL")],
        trust=fed.trust,
        now=plain.envelope.created_at,
    )
    value = resign(for_both, fr.key, recipients=(NodeId("DE"),))
    return dataclasses.replace(for_both, value=value)


async def _build(bootstrap: str, folder: Path) -> tuple[str, Federation, dict[str, Placed]]:
    prefix = unique_prefix()
    revoked_key, expired_key = SigningKey.generate(), SigningKey.generate()
    revoked_at = datetime.now(UTC) - timedelta(days=1)
    fed = audit_federation(
        folder,
        ("FR", "DE", "NL"),
        extra_keys={"DE": revoked_key},
        revoked={KeyId(revoked_key.key_id): revoked_at},
        expired_keys={"DE": expired_key},
    )
    await create_federation_topics(bootstrap, prefix)
    alerts, indicators = Topic(f"{prefix}.alerts.v1"), Topic(f"{prefix}.indicators.v1")
    now = datetime.now(UTC)
    fr, de, nl = fed.sender("FR"), fed.sender("DE"), fed.sender("NL")
    plan: list[tuple[str, str, bytes | None, bytes, int | None]] = []
    stamps: list[int | None] = []

    def put(
        name: str,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = 0,
        appended_at: datetime | None = None,
    ) -> None:
        """``appended_at``: the record's Kafka timestamp (these test topics are CreateTime,
        so a test can write history as if appended then); None: the broker's now."""
        plan.append((name, topic, key, value, partition))
        stamps.append(None if appended_at is None else int(appended_at.timestamp() * 1000))

    fr1 = fr.alert(now, topic=alerts)
    put("fr1", alerts, fr1.key, fr1.value)
    fr2 = fr.alert(now, topic=alerts)
    put("fr2", alerts, fr2.key, fr2.value, 1)
    link3 = fr.chain.next(alerts)
    fr3 = fr.alert(now, topic=alerts)
    put("fr3", alerts, fr3.key, fr3.value)
    fork = fr.alert(now, topic=alerts, link=link3, advance=False)  # another envelope, sequence 3
    put("fork", alerts, fork.key, fork.value)
    fr.alert(now, topic=alerts)  # sequence 4 is signed but never published: a deleted message
    fr5 = fr.alert(now, topic=alerts)
    put("gap", alerts, fr5.key, fr5.value, 2)
    broken = fr.alert(now, topic=alerts, link=Link(6, bytes(32)))
    put("chain_break", alerts, broken.key, broken.value)
    dup = fr.alert(now, topic=alerts, message_id=fr1.envelope.message_id)
    put("duplicate_id", alerts, dup.key, dup.value)
    put("resend", alerts, fr2.key, fr2.value, 1)  # byte-identical re-send of sequence 2
    forged = fr.alert(now, topic=alerts, advance=False)
    put("forged", alerts, forged.key, forge(forged.value))

    signed_at = revoked_at - timedelta(hours=1)
    before = de.alert(signed_at, topic=alerts, signer=revoked_key)
    put("signed_before_revocation", alerts, before.key, before.value, appended_at=signed_at)
    # the stolen revoked key, created_at written as a minute before the revocation
    backdated = de.alert(
        revoked_at - timedelta(minutes=1), topic=alerts, signer=revoked_key, advance=False
    )
    put("backdated_revoked", alerts, backdated.key, backdated.value)
    hidden = fr.alert(now, topic=alerts, advance=False)
    hidden = _hide_recipient(fed, hidden)
    put("hidden_recipient", alerts, hidden.key, hidden.value)
    de1 = de.alert(now, topic=alerts)
    put("de1", alerts, de1.key, de1.value)
    de2 = de.alert(now, topic=alerts)
    put("de2", alerts, de2.key, de2.value)
    put("moved_topic", indicators, de2.key, de2.value)
    put("moved_key", alerts, b"another-key", de2.value)
    revoked = de.alert(now, topic=alerts, signer=revoked_key, advance=False)
    put("revoked", alerts, revoked.key, revoked.value)
    stranger = de.alert(now, topic=alerts, signer=SigningKey.generate(), advance=False)
    put("unknown_key", alerts, stranger.key, stranger.value)
    impostor = de.alert(now, topic=alerts, advance=False)
    put("sender_key_mismatch", alerts, impostor.key, resign(impostor, nl.key))
    red = de.alert(now, topic=alerts, advance=False)
    put("red", alerts, red.key, resign(red, de.key, handling=RED))
    put("garbage", alerts, b"k", b"\x00garbage bytes\xff")
    put("unknown_schema", alerts, b"k", b"\xc3\x01" + bytes.fromhex("deadbeefdeadbeef") + b"\x00")
    expired = de.alert(now, topic=alerts, signer=expired_key, advance=False)
    put("key_not_valid_at_time", alerts, expired.key, expired.value)
    misplaced = de.alert(
        now, topic=alerts, advance=False
    )  # an alert written for the indicators topic
    put("type_not_allowed", indicators, misplaced.key, resign(misplaced, de.key, topic=indicators))

    # NL reuses FR's first message id: another sender's message, not a duplicate
    squat = nl.alert(now, topic=alerts, message_id=fr1.envelope.message_id)
    put("squat", alerts, squat.key, squat.value)
    for i in range(1, 4):  # a clean chain spread over partitions by the record key
        s = nl.alert(now, topic=alerts)
        put(f"nl{i}", alerts, s.key, s.value, None)
    placed = await produce(
        bootstrap, [(t, k, v, p) for _, t, k, v, p in plan], timestamps_ms=stamps
    )
    return prefix, fed, {name: p for (name, *_), p in zip(plan, placed, strict=True)}


def replay(args: list[str], folder: Path, name: str) -> tuple[int, dict[str, Any]]:
    """Run `exchange audit replay` in-process; exit code and JSON report."""
    report = folder / f"{name}.json"
    code = main(["audit", "replay", *args, "--report", str(report)])
    return code, json.loads(report.read_text())


@pytest.fixture(scope="module")
def history(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> History:
    folder = tmp_path_factory.mktemp("audit")
    prefix, fed, at = asyncio.run(_build(kafka_bootstrap, folder))
    code, report = replay(
        ["--bootstrap", kafka_bootstrap, "--trust", str(fed.trust_path), "--prefix", prefix],
        folder,
        "full",
    )
    return History(prefix, fed, at, report, code, folder)


def test_violations_exit_one(history: History) -> None:
    """A history with violations makes the replay exit 1, and the report says so."""
    assert history.exit_code == 1
    assert history.report["status"] == "violations"


def test_skipped_sequence_is_a_gap_at_the_next_record(history: History) -> None:
    """Sequence 4 never published: sequence_gap at sequence 5, naming sequence 4."""
    [v] = history.at_place("gap")
    assert v["kind"] == "sequence_gap"
    assert "sequence 4 of FR" in v["reason"]
    assert len(history.found("sequence_gap")) == 1


def test_fork_is_found_at_the_second_envelope(history: History) -> None:
    """Two different envelopes with sequence 3: a fork at the later one."""
    [v] = history.at_place("fork")
    assert v["kind"] == "fork"
    assert v["sender"] == "FR"
    assert "sequence 3" in v["reason"]


def test_chain_break_is_found(history: History) -> None:
    """A previous hash that is not sequence 5's hash: chain_break at sequence 6."""
    [v] = history.at_place("chain_break")
    assert v["kind"] == "chain_break"
    assert "is not the hash of sequence 5" in v["reason"]


def test_duplicate_message_id_is_found(history: History) -> None:
    """A new message reusing sequence 1's message id: duplicate_message_id."""
    [v] = history.at_place("duplicate_id")
    assert v["kind"] == "duplicate_message_id"
    assert "different content" in v["reason"]


def test_identical_resend_is_a_duplicate_with_a_note(history: History) -> None:
    """A byte-identical re-send: duplicate_message_id noted 'identical bytes', no fork."""
    [v] = history.at_place("resend")
    assert v["kind"] == "duplicate_message_id"
    assert "identical bytes" in v["reason"]


def test_forged_signature_is_found_naming_the_claimed_sender(history: History) -> None:
    """A flipped signature byte: bad_signature, with the claimed sender and message id."""
    [v] = history.at_place("forged")
    assert v["kind"] == "bad_signature"
    assert v["sender"] == "FR"
    assert v["message_id"]


def test_revoked_key_used_after_revocation_is_found(history: History) -> None:
    """A message created after its key's revocation: revoked_key."""
    [v] = history.at_place("revoked")
    assert v["kind"] == "revoked_key"
    assert "revoked at" in v["reason"]


def test_key_revoked_later_still_verifies_what_it_signed_before(history: History) -> None:
    """A message signed before its key's revocation is judged as of its time: valid."""
    assert history.at_place("signed_before_revocation") == []


def test_revoked_key_backdated_to_before_its_revocation_is_found(history: History) -> None:
    """A thief's record with the revoked key and created_at a minute before the revocation,
    appended now: revoked_key, judged at the broker's append time (v1 accepted it)."""
    [v] = history.at_place("backdated_revoked")
    assert v["kind"] == "revoked_key"


def test_a_key_wrapped_for_an_unlisted_node_is_found(history: History) -> None:
    """A body whose content key is also wrapped for NL, who is not listed: wrapped_keys_mismatch."""
    [v] = history.at_place("hidden_recipient")
    assert v["kind"] == "wrapped_keys_mismatch"
    assert "NL" in v["reason"]


def test_another_senders_reuse_of_a_message_id_is_not_a_duplicate(history: History) -> None:
    """NL publishing under FR's message id: neither record is reported (a message is
    (sender, message id)), so no member can make another's record look replayed."""
    assert history.at_place("squat") == []
    assert history.at_place("fr1") == []


def test_record_moved_to_another_topic_is_found(history: History) -> None:
    """A valid record copied to another topic: wrong_topic there."""
    [v] = history.at_place("moved_topic")
    assert v["kind"] == "wrong_topic"


def test_record_moved_to_another_key_is_found(history: History) -> None:
    """A valid record copied under another key: wrong_key."""
    [v] = history.at_place("moved_key")
    assert v["kind"] == "wrong_key"


def test_unknown_key_is_found(history: History) -> None:
    """A record signed by a key not in the trust list: unknown_key."""
    [v] = history.at_place("unknown_key")
    assert v["kind"] == "unknown_key"


def test_sender_key_mismatch_is_found(history: History) -> None:
    """DE's envelope signed with NL's key: sender_key_mismatch."""
    [v] = history.at_place("sender_key_mismatch")
    assert v["kind"] == "sender_key_mismatch"


def test_red_without_recipients_is_handling_inconsistent(history: History) -> None:
    """TLP:RED with no named recipients: handling_inconsistent."""
    [v] = history.at_place("red")
    assert v["kind"] == "handling_inconsistent"
    assert "TLP:RED" in v["reason"]


def test_unknown_schema_fingerprint_is_found(history: History) -> None:
    """A single-object encoding naming no known schema: unknown_schema."""
    [v] = history.at_place("unknown_schema")
    assert v["kind"] == "unknown_schema"


def test_key_used_outside_its_validity_window_is_found(history: History) -> None:
    """A key whose window ended before the message was created: key_not_valid_at_time."""
    [v] = history.at_place("key_not_valid_at_time")
    assert v["kind"] == "key_not_valid_at_time"


def test_message_type_on_the_wrong_topic_is_found(history: History) -> None:
    """An OffenceAlert signed for the indicators topic: type_not_allowed."""
    [v] = history.at_place("type_not_allowed")
    assert v["kind"] == "type_not_allowed"


def test_garbage_bytes_are_malformed(history: History) -> None:
    """Bytes that are no SignedEnvelope: malformed."""
    [v] = history.at_place("garbage")
    assert v["kind"] == "malformed"


def test_nothing_else_is_reported(history: History) -> None:
    """Exactly the injected violations are found: clean records raise nothing."""
    injected = {
        "gap", "fork", "chain_break", "duplicate_id", "resend", "forged", "revoked",
        "backdated_revoked", "hidden_recipient",
        "moved_topic", "moved_key", "unknown_key", "sender_key_mismatch", "red", "garbage",
        "unknown_schema", "key_not_valid_at_time", "type_not_allowed",
    }  # fmt: skip
    expected = sorted(
        (p.topic, p.partition, p.offset) for n, p in history.at.items() if n in injected
    )
    got = sorted((v["topic"], v["partition"], v["offset"]) for v in history.report["violations"])
    assert got == expected


def test_counts_describe_the_history(history: History) -> None:
    """The report counts records per topic and verified messages per sender."""
    counts = history.report["counts"]
    assert counts["records"] == len(history.at)
    assert counts["by_sender"] == {"DE": 3, "FR": 8, "NL": 4}
    assert history.report["trust_list"]["federation"] == "eu-audit-test"
    assert history.report["source"]["topics"] == sorted(
        f"{history.prefix}.{k}.v1" for k in ("alerts", "blacklist", "indicators", "pseudonyms")
    )


def test_archive_round_trip_finds_the_same_violations(
    history: History, kafka_bootstrap: str
) -> None:
    """Export then replay --archive (no broker) finds exactly what the live replay found."""
    out = history.folder / "history.avro"
    code = main(
        [
            *("audit", "export", "--bootstrap", kafka_bootstrap),
            *("--prefix", history.prefix, "--out", str(out)),
        ]
    )
    assert code == 0
    code, report = replay(
        ["--archive", str(out), "--trust", str(history.fed.trust_path), "--workers", "0"],
        history.folder,
        "archive",
    )
    assert code == 1
    assert report["violations"] == history.report["violations"]
    assert report["counts"] == history.report["counts"]
    assert report["source"]["kind"] == "archive"
    assert report["source"]["export"]["source"]["bootstrap"] == kafka_bootstrap


def test_html_report_charts_every_member(history: History, kafka_bootstrap: str) -> None:
    """--html writes a page with the volume chart naming each member and the violations."""
    page = history.folder / "r.html"
    code = main(
        [
            *("audit", "replay", "--bootstrap", kafka_bootstrap, "--prefix", history.prefix),
            *("--trust", str(history.fed.trust_path), "--html", str(page), "--workers", "1"),
        ]
    )
    assert code == 1
    text = page.read_text()
    for member in ("FR (8)", "DE (3)", "NL (4)", "(unverified) (13)"):
        assert member in text
    assert "revoked_key" in text


def test_topic_option_limits_the_replay(history: History, kafka_bootstrap: str) -> None:
    """--topic reads only the named topics: here the indicators topic and its two records."""
    indicators = f"{history.prefix}.indicators.v1"
    code, report = replay(
        [
            *("--bootstrap", kafka_bootstrap, "--trust", str(history.fed.trust_path)),
            *("--topic", indicators, "--workers", "0"),
        ],
        history.folder,
        "one-topic",
    )
    assert code == 1
    assert report["source"]["topics"] == [indicators]
    assert [v["kind"] for v in report["violations"]] == ["wrong_topic", "type_not_allowed"]


def test_workers_reading_find_what_the_main_process_reading_finds(
    history: History, kafka_bootstrap: str
) -> None:
    """Verification workers reading Kafka themselves report exactly what one reader does."""
    code, report = replay(
        [
            *("--bootstrap", kafka_bootstrap, "--trust", str(history.fed.trust_path)),
            *("--prefix", history.prefix, "--workers", "0"),
        ],
        history.folder,
        "inline",
    )
    assert code == history.exit_code
    assert {k: v for k, v in report.items() if k != "replayed_at"} == {
        k: v for k, v in history.report.items() if k != "replayed_at"
    }


def test_topics_timed_by_their_producers_are_named_in_the_report(history: History) -> None:
    """These test topics were created with CreateTime (to write history with chosen times):
    the report names them, since their times are the senders' claims, not the broker's."""
    timed = history.report["source"]["producer_timed_topics"]
    assert f"{history.prefix}.alerts.v1" in timed
