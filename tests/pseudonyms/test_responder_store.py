"""The responder on a real store (SQLite and PostgreSQL), queries placed as the consumer
stores them: index, lookups, refusals, the key's grace, follow-ups and overdue requests,
each with a clock the test sets."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from exchange import codec
from exchange.errors import InputError
from exchange.ids import NodeId
from exchange.pseudonyms.csvfile import parse_text
from exchange.pseudonyms.decide import ResponderPolicy
from exchange.pseudonyms.keys import Keyring, blind, keyring_for
from exchange.pseudonyms.normalize import normalize_handle
from exchange.pseudonyms.rotation import rotate
from exchange.trust import TrustList
from nodes.pseudonyms.cli import import_file
from nodes.pseudonyms.repo import repo_for
from nodes.pseudonyms.service import PseudonymService
from nodes.store.base import AuditAction, Store, StoredRecord, open_store
from tests.helpers.federation import NOW, Federation, make_federation

TOPIC = "ncp.pseudonyms.v1"
CSV = (
    "platform,handle,case_reference,contact_unit,first_seen,last_seen\n"
    "telegram,@dark_seller42,DE-117,BKA SO41,2026-10-01,2026-11-20\n"
    "telegram,bad handle,DE-118,BKA SO41,2026-10-01,\n"
    "x,carol,DE-119,BKA SO41,2026-10-01,\n"
)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return make_federation(tmp_path_factory.mktemp("fed"), valid_from=NOW - timedelta(days=30))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


class Setup:
    def __init__(
        self,
        fed: Federation,
        store: Store,
        trust: TrustList,
        max_per_hour: int = 60,
        allowed: frozenset[str] = frozenset({"FR", "NL"}),
    ):
        self.fed = fed
        self.store = store
        self.trust = trust
        self.ring: Keyring = keyring_for(
            trust.pseudonym_keys, NodeId("DE"), fed.nodes["DE"].encryption
        )
        self.service = PseudonymService(
            node=NodeId("DE"),
            prefix="ncp",
            topic=TOPIC,
            repo=repo_for(store),
            policy=ResponderPolicy(allowed, max_per_hour),
            keyring=lambda: self.ring,
            trust=lambda: self.trust,
            decision_timeout=timedelta(hours=48),
        )
        self.offset = 0

    async def receive(self, sender: str, at: datetime, **payload: Any) -> str:
        """Store a PseudonymQuery from ``sender`` as the consumer would; its query id."""
        query_id = str(uuid.uuid4())
        body = {
            "query_id": query_id,
            "platform": "telegram",
            "category": "OTHER",
            "justification": "patrol",
            "requested_detail": "HIT_ONLY",
            "requester": sender,
            "purpose": "p",
            "legal_basis": "l",
            **payload,
        }
        self.offset += 1
        record = StoredRecord(
            message_id=uuid.uuid4(),
            topic=TOPIC,
            partition=0,
            offset=self.offset,
            sender=sender,
            message_type="PseudonymQuery",
            key=query_id,
            sequence=self.offset,
            created_at=at,
            received_at=at,
            category="OTHER",
            tlp="AMBER",
            handling_code="H2",
            recipients=(),
            payload=body,
            envelope_hash=uuid.uuid4().bytes * 2,
            expires_at=None,
        )
        await self.store.commit_batch(
            "g", records=[record], quarantined=[], retractions=[], audit=[], offsets={}
        )
        return query_id

    def blinded(
        self, handle: str, ring: Keyring | None = None, platform: str = "telegram"
    ) -> dict[str, str]:
        key = (ring or self.ring).current
        assert key is not None
        return {
            "blinded_handle": blind(key.secret, platform, normalize_handle(platform, handle)).hex(),
            "pseudonym_key_id": key.key_id,
        }

    async def answers(self) -> dict[str, Answer]:
        """The answers DE enqueued, by query id (their payload as the publisher signs it)."""
        items = await self.store.pending(1000)
        out = {}
        for i in items:
            if i.message_type == "PseudonymResponse":
                assert i.payload_avro is not None
                _name, payload = codec.decode(i.payload_avro, expected="PseudonymResponse")
                out[i.key] = Answer(payload, i.recipients)
        return out


@dataclass(frozen=True)
class Answer:
    payload: dict[str, Any]
    recipients: tuple[str, ...]


async def import_csv(s: Setup, tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(CSV, encoding="utf-8")
    kept, problems = await import_file(s.service, s.store, path, actor="cli:analyst", now=NOW)
    assert kept == 2
    assert [str(p) for p in problems] == ["line 3: handle: a handle has no inner white space"]


async def test_import_keeps_good_rows_and_a_blinded_query_hits_only_the_indexed_handle(
    fed: Federation, store: Store, tmp_path: Path
) -> None:
    """Good rows are kept beside a refused one; any spelling of an indexed handle hits
    with reference and contact unit only; another handle or platform misses; the answers
    are addressed to the requester alone; the import and each answer are audited."""
    s = Setup(fed, store, fed.trust)
    await import_csv(s, tmp_path)
    await import_csv(s, tmp_path)  # idempotent: same two entries
    assert await s.service.repo.count_entries() == 2
    hit = await s.receive("FR", NOW, **s.blinded("@DARK_Seller42"))
    miss = await s.receive("NL", NOW, **s.blinded("someone_else"))
    other_platform = await s.receive(
        "FR", NOW, **s.blinded("dark_seller42", platform="x"), platform="x"
    )
    assert await s.service.respond_once(NOW) == 3
    answers = await s.answers()
    assert answers[hit].payload["outcome"] == "HIT"
    assert (answers[hit].payload["case_reference"], answers[hit].payload["contact_unit"]) == (
        "DE-117",
        "BKA SO41",
    )
    assert answers[hit].payload.get("details") is None
    assert answers[hit].recipients == ("FR",)
    assert answers[miss].payload["outcome"] == "NO_HIT"
    assert answers[miss].recipients == ("NL",)
    assert answers[other_platform].payload["outcome"] == "NO_HIT"
    assert await s.service.respond_once(NOW) == 0  # each query is answered once
    audit = [e.event for e in await store.audit_entries()]
    assert [e.details["event"] for e in audit] == ["pseudonym_import"] * 2 + [
        "pseudonym_answer"
    ] * 3
    assert audit[0].action is AuditAction.COLLECTION


async def test_rate_limit_counts_per_member_per_hour_and_refuses_with_the_reason(
    fed: Federation, store: Store
) -> None:
    """With max 2 an hour, FR's third query within the hour is refused as rate_limited,
    NL is not affected, and FR may ask again once its queries are an hour old (a sliding hour)."""
    s = Setup(fed, store, fed.trust, max_per_hour=2)
    ids = [await s.receive("FR", NOW + timedelta(minutes=i), **s.blinded("x")) for i in range(3)]
    nl = await s.receive("NL", NOW + timedelta(minutes=5), **s.blinded("x"))
    later = await s.receive("FR", NOW + timedelta(minutes=63), **s.blinded("x"))
    await s.service.respond_once(NOW + timedelta(hours=2))
    answers = await s.answers()
    outcomes = [answers[i].payload["outcome"] for i in ids]
    assert outcomes == ["NO_HIT", "NO_HIT", "REFUSED"]
    assert answers[ids[2]].payload["refusal_reason"].startswith("rate_limited: FR sent 2 queries")
    assert answers[nl].payload["outcome"] == "NO_HIT"
    assert answers[later].payload["outcome"] == "NO_HIT"


async def test_a_member_not_allowed_and_a_handle_in_clear_are_refused(
    fed: Federation, store: Store
) -> None:
    """DE allows FR only; an old-style query with the handle in clear is not answered."""
    s = Setup(fed, store, fed.trust, allowed=frozenset({"FR"}))
    stranger = await s.receive("NL", NOW, **s.blinded("x"))
    clear = await s.receive("FR", NOW, pseudonym="dark_seller42")
    await s.service.respond_once(NOW)
    answers = await s.answers()
    assert answers[stranger].payload["refusal_reason"].startswith("not_allowed: NL")
    assert answers[clear].payload["refusal_reason"].startswith("clear_handle")
    assert "dark_seller42" not in str(answers[clear].payload)


async def test_queries_under_the_previous_key_are_answered_during_its_grace_only(
    fed: Federation, store: Store, tmp_path: Path
) -> None:
    """After a rotation DE answers a query blinded under the old key until grace_until
    (a hit), and refuses it as unknown_key after; the new key hits throughout."""
    old = Setup(fed, store, fed.trust).ring
    rotated_at = NOW + timedelta(hours=1)
    s = Setup(fed, store, rotate(fed.trust, rotated_at, grace=timedelta(hours=24)))
    await import_csv(s, tmp_path)
    assert len(s.ring.usable(rotated_at)) == 2
    in_grace = await s.receive(
        "FR", rotated_at + timedelta(hours=23), **s.blinded("dark_seller42", old)
    )
    past = await s.receive(
        "NL", rotated_at + timedelta(hours=25), **s.blinded("dark_seller42", old)
    )
    new = await s.receive(
        "NL", rotated_at + timedelta(hours=25, minutes=1), **s.blinded("dark_seller42")
    )
    await s.service.respond_once(rotated_at + timedelta(hours=26))
    answers = await s.answers()
    assert answers[in_grace].payload["outcome"] == "HIT"
    assert answers[past].payload["refusal_reason"].startswith("unknown_key")
    assert answers[new].payload["outcome"] == "HIT"


async def test_details_wait_for_a_person_become_overdue_and_go_out_only_when_approved(
    fed: Federation, store: Store, tmp_path: Path
) -> None:
    """A request for details is not answered by the responder; 48 h later (injected clock)
    it is overdue; a denial sends no details; an approval sends them to the requester
    only, logged as approval then disclosure with actor and justification."""
    s = Setup(fed, store, fed.trust)
    await import_csv(s, tmp_path)
    fr_hit = await s.receive("FR", NOW, **s.blinded("dark_seller42"))
    nl_hit = await s.receive("NL", NOW, **s.blinded("carol", platform="x"), platform="x")
    await s.service.respond_once(NOW)
    hits = await s.answers()
    assert hits[fr_hit].payload["case_reference"] == "DE-117"
    assert hits[nl_hit].payload["case_reference"] == "DE-119"
    blinded = s.blinded("dark_seller42")
    first = await s.receive(
        "FR",
        NOW,
        **blinded,
        requested_detail="DETAILS",
        follow_up_of=fr_hit,
        case_reference="DE-117",
    )
    second = await s.receive(
        "NL",
        NOW,
        **blinded,
        requested_detail="DETAILS",
        follow_up_of=nl_hit,
        case_reference="DE-119",
    )
    await s.service.respond_once(NOW)
    assert set(await s.answers()) == {fr_hit, nl_hit}  # nothing more: the requests wait
    assert {r.query_id for r in await s.service.repo.requests("pending")} == {first, second}
    assert await s.service.overdue(NOW + timedelta(hours=47)) == 0
    assert await s.service.overdue(NOW + timedelta(hours=49)) == 2
    with pytest.raises(InputError, match="justification"):
        await s.service.decide(first, approve=True, actor="cli:duty", justification=" ", now=NOW)
    await s.service.decide(
        second,
        approve=False,
        actor="cli:duty",
        justification="not proportionate",
        now=NOW + timedelta(hours=1),
    )
    await s.service.decide(
        first,
        approve=True,
        actor="cli:duty",
        justification="confirmed",
        now=NOW + timedelta(hours=2),
    )
    with pytest.raises(InputError, match="no pending request"):
        await s.service.decide(
            first, approve=True, actor="cli:duty", justification="again", now=NOW
        )
    assert await s.service.overdue(NOW + timedelta(hours=49)) == 0
    answers = await s.answers()
    assert answers[second].payload["outcome"] == "DENIED"
    assert answers[second].payload.get("details") is None
    assert answers[first].payload["outcome"] == "DETAILS"
    assert answers[first].recipients == ("FR",)
    assert "case DE-117" in answers[first].payload["details"]
    events = [
        (e.event.details.get("event"), e.event.actor, e.event.justification)
        for e in await store.audit_entries()
    ]
    decided = [
        e
        for e in events
        if e[0] in ("pseudonym_denial", "pseudonym_approval", "pseudonym_disclosure")
    ]
    assert decided == [
        ("pseudonym_denial", "cli:duty", "not proportionate"),
        ("pseudonym_approval", "cli:duty", "confirmed"),
        ("pseudonym_disclosure", "cli:duty", "confirmed"),
    ]


def test_the_csv_fixture_is_what_the_tests_say() -> None:
    """Two good rows, one bad (line 3)."""
    result = parse_text(CSV)
    assert len(result.entries) == 2
    assert [p.line for p in result.problems] == [3]


async def test_details_of_a_case_the_asker_was_not_given_are_refused(
    fed: Federation, store: Store, tmp_path: Path
) -> None:
    """NL asks for the details of DE-117, which DE gave FR, not NL; and FR names a query of
    its own that missed: both refused as not_our_hit, nothing waits for a person."""
    s = Setup(fed, store, fed.trust)
    await import_csv(s, tmp_path)
    fr_hit = await s.receive("FR", NOW, **s.blinded("dark_seller42"))
    fr_miss = await s.receive("FR", NOW, **s.blinded("nobody"))
    await s.service.respond_once(NOW)
    details = {"requested_detail": "DETAILS", "case_reference": "DE-117", **s.blinded("x")}
    nl = await s.receive("NL", NOW, follow_up_of=fr_hit, **details)
    fr = await s.receive("FR", NOW, follow_up_of=fr_miss, **details)
    await s.service.respond_once(NOW)
    answers = await s.answers()
    for query_id in (nl, fr):
        assert answers[query_id].payload["outcome"] == "REFUSED"
        assert answers[query_id].payload["refusal_reason"].startswith("not_our_hit")
    assert await s.service.repo.requests("pending") == []
