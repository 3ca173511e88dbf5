"""Three real nodes on the real broker: blinded hit/no-hit, encrypted answers, approved
follow-ups; the handle never on the bus."""

from __future__ import annotations

import asyncio
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from exchange.audit.pseudonyms import check_log, check_topic
from exchange.audit.pseudonyms_cli import read_topic
from exchange.bus import KafkaSettings
from exchange.crypto import EncryptedBody, decrypt_body
from exchange.envelope import header_digest
from exchange.errors import ConfidentialityError, ExchangeError
from exchange.ids import NodeId
from exchange.keys import EncryptionKey
from exchange.models import parse_payload
from exchange.seal import open_verified, verify_record
from exchange.topics import MessageType, TopicKind, topic_name
from nodes.daemon import Node
from nodes.pseudonyms.cli import audit_log, import_file
from nodes.pseudonyms.node import service_for
from nodes.pseudonyms.service import PseudonymService
from nodes.store.base import AuditAction
from tests.audit.history import produce
from tests.helpers.federation import Federation
from tests.helpers.nodes import make_node as tuned_node
from tests.helpers.nodes import running
from tests.node.helpers import wait_for

pytestmark = pytest.mark.integration

HANDLE = "@Dark_Seller42"
CSV = (
    "platform,handle,case_reference,contact_unit,first_seen,last_seen\n"
    "Telegram,@dark_seller42,DE-BKA-2026-117,BKA SO41 cyber patrol,2026-10-01,2026-11-20\n"
    "Telegram,other_vendor,DE-BKA-2026-200,BKA SO41 cyber patrol,2026-10-01,\n"
)
ALLOW_ALL = {"rules": {"pseudonyms": {"query_allowed_from": ["*"]}}}


class Clock:
    """A clock a test moves (the node reads it for received-at, health and overdue)."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.shift


def make_node(fed: Federation, name: str, clock: Clock | None = None, **rules: Any) -> Node:
    pseudonyms = {"query_allowed_from": ["*"], **rules}
    return tuned_node(fed, name, clock=clock or Clock(), rules={"pseudonyms": pseudonyms})


def service(node: Node) -> PseudonymService:
    part = node.pseudonyms
    assert part is not None
    return service_for(node.config, node.store, lambda: part.ring, lambda: part.trust)


async def answers(node: Node, query_id: str, count: int) -> dict[str, dict[str, Any]]:
    """Wait until ``node`` stored ``count`` answers to ``query_id``; by member."""
    svc = service(node)
    found: dict[str, dict[str, Any]] = {}

    def enough() -> bool:
        return len(found) >= count

    async with asyncio.timeout(60):
        while True:
            found = {s: dict(p) for s, _t, p in await svc.repo.responses(svc.topic, query_id)}
            if enough():
                return found
            await asyncio.sleep(0.1)


async def ask(node: Node, handle: str = HANDLE, **kw: Any) -> str:
    return await service(node).ask(
        platform="telegram",
        handle=handle,
        actor="cli:patrol-officer",
        justification="vendor seen on a drug market channel",
        purpose="investigation FR-2026-33",
        legal_basis="CPP art. 230-45",
        category="ILLICIT_DRUG_TRADE",
        now=datetime.now(UTC),
        **kw,
    )


async def raw_records(fed: Federation, bootstrap: str) -> list[tuple[str, bytes, bytes, int]]:
    """Every (topic, key, value, append time in ms) on every federation topic, read raw."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        out: list[tuple[str, bytes, bytes, int]] = []
        parts = []
        metadata = await consumer._client.fetch_all_metadata()
        for kind in TopicKind:
            topic = topic_name(kind, fed.prefix)
            parts.extend(
                TopicPartition(topic, p) for p in metadata.partitions_for_topic(topic) or ()
            )
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in parts])

        while await behind():
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                out.extend((tp.topic, r.key or b"", r.value or b"", r.timestamp) for r in records)
        return out
    finally:
        await consumer.stop()


def spellings(handle: str) -> set[bytes]:
    forms = {handle, handle.lstrip("@"), handle.lower(), handle.lstrip("@").lower(), handle.upper()}
    forms |= {unicodedata.normalize(n, f) for f in list(forms) for n in ("NFC", "NFKC", "NFD")}
    return {f.encode(enc) for f in forms for enc in ("utf-8", "utf-16-le", "utf-16-be")}


async def test_fr_asks_de_hits_nl_misses_and_approved_details_reach_fr_only(
    live_federation: Federation, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """FR's blinded query: DE answers HIT (reference and contact unit only), NL NO_HIT; a
    request for details waits (overdue past 48 h) until DE's operator approves; only then
    are details sent, to FR alone; the handle is nowhere on the bus; NL cannot open DE's
    answers; every step is in the audit logs."""
    fed = live_federation
    de_clock = Clock()
    fr, de, nl = make_node(fed, "FR"), make_node(fed, "DE", de_clock), make_node(fed, "NL")
    csv_path = tmp_path / "patrol.csv"
    csv_path.write_text(CSV, encoding="utf-8")
    async with running(fr, de, nl):
        kept, problems = await import_file(
            service(de), de.store, csv_path, actor="cli:de-analyst", now=datetime.now(UTC)
        )
        assert (kept, problems) == (2, [])
        query_id = await ask(fr, "\uff20DARK_SELLER42")  # full-width @ and upper case: same handle
        got = await answers(fr, query_id, 2)
        assert got["DE"]["outcome"] == "HIT"
        assert (got["DE"]["case_reference"], got["DE"]["contact_unit"]) == (
            "DE-BKA-2026-117",
            "BKA SO41 cyber patrol",
        )
        assert got["DE"]["details"] is None
        assert got["NL"]["outcome"] == "NO_HIT"
        assert got["NL"]["case_reference"] is None

        follow = await ask(
            fr, follow_up_of=query_id, case_reference="DE-BKA-2026-117", recipients=["DE"]
        )
        de_svc = service(de)
        await de.wait_until(lambda: de.pseudonyms is not None and de.pseudonyms.answered >= 2)
        pending = await de_svc.repo.requests("pending")
        assert [p.query_id for p in pending] == [follow]
        assert await de.health() == []
        de_clock.shift = timedelta(hours=49)
        assert any("undecided for more than 48 h" in p for p in await de.health())
        assert b"exchange_pseudonym_requests_overdue 1.0" in de.metrics.render()
        de_clock.shift = timedelta(0)  # DE seals with its clock: back to the broker's time
        await fr.wait_caught_up()  # everything on the bus is in FR's store: no details yet
        assert await service(fr).repo.responses(service(fr).topic, follow) == []

        await de_svc.decide(
            follow,
            approve=True,
            actor="cli:de-duty-officer",
            justification="match confirmed",
            now=de_clock(),
        )
        details = await answers(fr, follow, 1)
        assert details["DE"]["outcome"] == "DETAILS"
        assert "first seen 2026-10-01" in details["DE"]["details"]
        assert await de.health() == []
        await nl.wait_caught_up()
        assert await service(nl).repo.responses(service(nl).topic, follow) == []
        assert await service(nl).repo.responses(service(nl).topic, query_id) == []

        de_audit = [e.event for e in await de.store.audit_entries()]
        events = [e.details.get("event") for e in de_audit]
        assert events.index("pseudonym_approval") < events.index("pseudonym_disclosure")
        disclosure = next(e for e in de_audit if e.details.get("event") == "pseudonym_disclosure")
        assert disclosure.action is AuditAction.DISCLOSURE
        assert disclosure.recipients == ("FR",)
        assert disclosure.actor == "cli:de-duty-officer"
        fr_events = [e.event.details.get("event") for e in await fr.store.audit_entries()]
        assert {"pseudonym_query", "pseudonym_details_request"} <= set(fr_events)
        de_log = await audit_log(de.store)

    raw = await raw_records(fed, kafka_bootstrap)
    pseudonyms = topic_name(TopicKind.PSEUDONYMS, fed.prefix)
    # the query, two answers, the request for details and the details
    assert sum(1 for t, *_ in raw if t == pseudonyms) == 5
    blob = b"\n".join(k + b"\n" + v for _t, k, v, _ts in raw)
    for form in spellings(HANDLE) | spellings("dark_seller42"):
        assert form not in blob, f"{form!r} travelled on the bus"

    nl_key = EncryptionKey.load(fed.nodes["NL"].directory / "encryption.key")
    fr_key = EncryptionKey.load(fed.nodes["FR"].directory / "encryption.key")
    from_de = 0
    for topic, key, value, ts in raw:
        if topic != pseudonyms:
            continue
        at = datetime.fromtimestamp(ts / 1000, UTC)
        verified = verify_record(
            value, topic=topic, key=key, trust=fed.trust, now=at, appended_at=at
        )
        env = verified.envelope
        if env.sender != "DE" or env.message_type is not MessageType.PSEUDONYM_RESPONSE:
            continue
        from_de += 1
        assert env.recipients == ("FR",)
        assert isinstance(env.body, EncryptedBody)
        assert (
            open_verified(verified, now=at, reader=NodeId("NL"), decryption_key=nl_key).payload
            is None
        )
        with pytest.raises(ConfidentialityError):  # NL's key, posing as FR: does not open
            decrypt_body(env.body, header_digest(env), NodeId("FR"), nl_key)
        opened = open_verified(verified, now=at, reader=NodeId("FR"), decryption_key=fr_key)
        assert opened.payload is not None
    assert from_de == 2  # the HIT and the approved DETAILS

    # the auditor: answers follow queries, DE's disclosure follows its approval
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    facts = await read_topic(settings, fed.prefix, fed.trust, fed.root.public_bytes)
    assert len(facts) == 5
    assert check_topic(facts) == []
    assert check_log("DE", de_log, facts) == []
    without_approval = [e for e in de_log if e["details"]["event"] != "pseudonym_approval"]
    found = check_log("DE", without_approval, facts)
    assert [v.kind for v in found] == ["disclosure_without_approval"]


async def test_over_its_rate_or_not_allowed_a_member_is_refused_with_that_reason(
    live_federation: Federation,
) -> None:
    """DE answers FR at most once an hour and NL never: one of FR's two queries and NL's
    query come back REFUSED with rate_limited and not_allowed; NL (allowing everyone)
    answers all."""
    fed = live_federation
    fr = make_node(fed, "FR")
    de = make_node(fed, "DE", query_allowed_from=["FR"], max_queries_per_hour=1)
    nl = make_node(fed, "NL")
    async with running(fr, de, nl):
        first = await ask(fr, "someone")
        second = await ask(fr, "someone_else")
        from_nl = await ask(nl, "someone")
        got_first, got_second = await answers(fr, first, 2), await answers(fr, second, 2)
        got_nl = await answers(nl, from_nl, 2)
    # the two queries travel on different partitions: either may be the one over the rate
    by_outcome = {a["outcome"]: a for a in (got_first["DE"], got_second["DE"])}
    assert set(by_outcome) == {"NO_HIT", "REFUSED"}
    assert by_outcome["REFUSED"]["refusal_reason"].startswith("rate_limited: FR sent 1 queries")
    assert got_nl["DE"]["outcome"] == "REFUSED"
    assert got_nl["DE"]["refusal_reason"] == "not_allowed: NL is not in query_allowed_from"
    assert got_second["NL"]["outcome"] == got_nl["FR"]["outcome"] == "NO_HIT"


async def test_a_member_posing_as_another_requester_or_sending_garbage_stops_nothing(
    live_federation: Federation, kafka_bootstrap: str
) -> None:
    """NL signs a query claiming FR asked: DE refuses it (requester_mismatch) and answers
    NL, not FR; a query whose blinded handle is not hex is quarantined; bytes that are no
    record at all are quarantined; DE's responder keeps running."""
    fed = live_federation
    de = make_node(fed, "DE")
    topic = topic_name(TopicKind.PSEUDONYMS, fed.prefix)
    now = datetime.now(UTC)
    lying = {
        "query_id": str(uuid.uuid4()),
        "platform": "telegram",
        "category": "OTHER",
        "justification": "j",
        "requested_detail": "HIT_ONLY",
        "requester": "FR",
        "blinded_handle": "ab" * 32,
        "pseudonym_key_id": fed.trust.pseudonym_keys[0].key_id,
    }
    nl = fed.member("NL")
    sealed = nl.seal(
        parse_payload(MessageType.PSEUDONYM_QUERY, lying, now=now), topic=topic, now=now
    )
    async with running(de):

        async def healthy() -> bool:  # DE has created the topics (broker-timed)
            return not await de.health()

        await wait_for(healthy, within_s=60, what="DE healthy, its topics created")
        await produce(
            kafka_bootstrap,
            [(topic, sealed.key, sealed.value, None), (topic, b"k", b"\xc3\x01garbage", None)],
        )
        await de.wait_until(lambda: de.metrics.quarantined.value() >= 1, 60)
        part = de.pseudonyms
        assert part is not None
        await de.wait_until(lambda: part.answered >= 1, 60)
        (request,) = await service(de).repo.requests()
        assert request.sender == "NL"
        assert request.status == "refused"
        assert str(request.reason).startswith("requester_mismatch")
        await de.wait_published(1)
        assert de.supervisor.loops["pseudonyms"].restarts == 0
        assert await de.health() == []
    recipients = []
    for t, key, value, ts in await raw_records(fed, kafka_bootstrap):
        at = datetime.fromtimestamp(ts / 1000, UTC)
        try:
            v = verify_record(value, topic=t, key=key, trust=fed.trust, now=at, appended_at=at)
        except ExchangeError:
            continue
        if v.envelope.message_type is MessageType.PSEUDONYM_RESPONSE:
            recipients.append(v.envelope.recipients)
    assert recipients == [("NL",)]  # the refusal went to the member that sent the query
