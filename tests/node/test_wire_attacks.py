"""Issue 9's attacks on the wire, end to end: crafted records on the real broker, real nodes
(in-process, real SQLite stores) receiving them. Each test failed on the v1 wire.

One scenario runs per module (the nodes start once); each test then checks one attack's
outcome in what the receiving nodes stored and quarantined.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from exchange import crypto
from exchange.bus import ensure_topics
from exchange.crypto import EncryptedBody, Entropy, Recipient
from exchange.envelope import header_digest
from exchange.ids import KeyId, NodeId
from exchange.keys import SigningKey
from exchange.seal import Sealed
from exchange.trust import KeyEntry
from exchange.uuid7 import uuid7
from nodes.daemon import Node
from nodes.store.base import QuarantineEntry, StoredRecord
from tests.audit.history import produce
from tests.helpers.broker import create_topics, unique_prefix
from tests.helpers.federation import NOW, Federation, Member, handling, make_federation
from tests.helpers.nodes import make_node

pytestmark = pytest.mark.integration


@dataclass
class Outcome:
    """What DE and NL made of the crafted records, and the records' message ids by name."""

    de_records: list[StoredRecord]
    de_quarantine: list[QuarantineEntry]
    nl_records: list[StoredRecord]
    nl_quarantine: list[QuarantineEntry]
    ids: dict[str, UUID]


def _recipient(fed: Federation, node: str) -> Recipient:
    key = fed.nodes[NodeId(node)].encryption
    return Recipient(NodeId(node), key.key_id, key.public_bytes)


def _two_content_keys(fed: Federation, fr: Member, now: datetime) -> Sealed:
    """FR seals for DE and NL but wraps for NL another content key than it commits to."""
    honest = fr.alert(now, title="commitment", recipients=["DE", "NL"], advance=False)
    env = honest.envelope
    body = env.body
    assert isinstance(body, EncryptedBody)
    de = fed.nodes[NodeId("DE")].encryption
    plaintext = crypto.decrypt_body(body, header_digest(env), NodeId("DE"), de)
    digest = header_digest(env)
    eph = bytes(range(1, 33))
    targets = [_recipient(fed, "DE"), _recipient(fed, "NL")]
    one = crypto.encrypt_body(
        plaintext, digest, targets, entropy=Entropy(bytes(32), bytes(12), eph)
    )
    two = crypto.encrypt_body(
        plaintext, digest, targets, entropy=Entropy(b"\1" * 32, bytes(12), eph)
    )
    crafted = dataclasses.replace(one, wrapped_keys=(one.wrapped_keys[0], two.wrapped_keys[1]))
    return fr.sign(env._replace(body=crafted))


async def _scenario(kafka_bootstrap: str, folder: Path) -> Outcome:
    fed = make_federation(
        folder / "fed",
        prefix=unique_prefix(),
        bootstrap=kafka_bootstrap,
        valid_from=NOW - timedelta(days=30),
    )
    now = datetime.now(UTC)
    # FR's key was stolen and revoked an hour ago; NL's second key expired an hour ago.
    stolen = fed.signer("FR")
    revoked_at = now - timedelta(hours=1)
    old_nl = SigningKey.generate()
    nl_member = fed.trust.member(NodeId("NL"))
    old_entry = KeyEntry.for_key(old_nl.public_bytes, now - timedelta(days=30), revoked_at)
    trust = fed.trust.with_member(
        dataclasses.replace(nl_member, signing_keys=(*nl_member.signing_keys, old_entry)),
        issued_at=now - timedelta(hours=2),
    )
    fr_new = SigningKey.generate()
    fr_member = trust.member(NodeId("FR"))
    trust = trust.with_member(
        dataclasses.replace(
            fr_member,
            signing_keys=(
                *fr_member.signing_keys,
                KeyEntry.for_key(fr_new.public_bytes, now - timedelta(days=1)),
            ),
        ),
        issued_at=now - timedelta(hours=2),
    ).revoke(KeyId(stolen.key_id), revoked_at, "key stolen", issued_at=revoked_at)
    fed.publish_trust(trust)

    de = make_node(fed, "DE")
    nl = make_node(fed, "NL")
    # The topics exist, stamped with the broker's time, before anything is produced: a node
    # creates them in the background, and a raw producer first would auto-create them with
    # the producer's time (records then refused as not_append_time).
    await ensure_topics(de.config.kafka.settings(), fed.prefix)
    await de.start()
    await nl.start()
    try:
        fr = fed.member("FR", fr_new)
        mm = fed.member("NL")
        thief = fed.member("FR", stolen)
        expired = fed.member("NL", old_nl)
        ids: dict[str, UUID] = {}
        plan: list[Sealed] = []

        # 1. transplant: NL copies FR's TLP:RED body for DE, and its id, into its own
        # CLEAR/H0 envelope, published before FR's genuine record
        red = fr.alert(now, title="red for DE", recipients=["DE"], tlp="RED", code="H2")
        transplant = mm.sign(
            red.envelope._replace(handling=handling("CLEAR", "H0"), sender=NodeId("NL"))
        )
        ids["red"] = ids["transplant"] = red.envelope.message_id
        plan += [transplant, red]
        # 2. id squatting: NL's own valid alert under FR's next message id, published first
        squatted = uuid7(now)
        ids["squatted"] = squatted
        plan += [
            mm.alert(now, title="squat", message_id=squatted),
            fr.alert(now, title="genuine", message_id=squatted),
        ]
        # 3. key commitment: NL's wrapped key holds another content key than DE's
        commitment = _two_content_keys(fed, fr, now)
        ids["commitment"] = commitment.envelope.message_id
        plan.append(commitment)
        # 4. a hidden recipient: wrapped for DE and NL, listing DE only
        both = fr.alert(now, title="hidden", recipients=["DE", "NL"], advance=False)
        hidden = fr.sign(both.envelope._replace(recipients=(NodeId("DE"),)))
        ids["hidden"] = hidden.envelope.message_id
        plan.append(hidden)
        # 5. backdating: the stolen, revoked key, created_at a minute before the revocation
        backdated = thief.alert(revoked_at - timedelta(minutes=1), title="backdated")
        ids["backdated"] = backdated.envelope.message_id
        plan.append(backdated)
        # 6. an expired key, created_at inside its window
        old = expired.alert(revoked_at - timedelta(minutes=1), title="expired")
        ids["expired"] = old.envelope.message_id
        plan.append(old)
        # 7. created_at too far ahead of the broker's clock, and an id from another time
        ahead = fr.alert(now + timedelta(minutes=30), title="ahead")
        ids["ahead"] = ahead.envelope.message_id
        odd_id = fr.alert(now, title="odd id", message_id=uuid7(now + timedelta(hours=2)))
        ids["odd_id"] = odd_id.envelope.message_id
        plan += [ahead, odd_id]

        await produce(kafka_bootstrap, [(fed.topic(), s.key, s.value, 0) for s in plan])
        total = len(plan)

        def settled(node: Node) -> bool:
            m = node.metrics
            return m.stored.value() + m.quarantined.value() + m.skipped.value() >= total

        await asyncio.gather(
            de.wait_until(lambda: settled(de), 60), nl.wait_until(lambda: settled(nl), 60)
        )
        return Outcome(
            await de.store.list_records(topic=fed.topic()),
            await de.store.list_quarantine(),
            await nl.store.list_records(topic=fed.topic()),
            await nl.store.list_quarantine(),
            ids,
        )
    finally:
        await nl.stop()
        await de.stop()


@pytest.fixture(scope="module")
def outcome(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    return asyncio.run(_scenario(kafka_bootstrap, tmp_path_factory.mktemp("attacks")))


def _stored(records: list[StoredRecord], sender: str, mid: UUID) -> list[StoredRecord]:
    return [r for r in records if r.sender == sender and r.message_id == mid]


def test_transplanted_body_is_quarantined_and_never_stored_as_the_thiefs(outcome: Outcome) -> None:
    """NL's envelope around FR's RED body: DE quarantines it as body_not_bound, stores no NL
    record with that id, and still stores FR's genuine record (not as a replay)."""
    mid = outcome.ids["red"]
    assert [q.reason for q in outcome.de_quarantine].count("body_not_bound") == 1
    assert _stored(outcome.de_records, "NL", mid) == []
    (genuine,) = _stored(outcome.de_records, "FR", mid)
    assert genuine.tlp == "RED"


def test_a_squatted_message_id_does_not_make_the_genuine_record_a_replay(outcome: Outcome) -> None:
    """NL publishing first under FR's message id: both records are stored, none replayed."""
    mid = outcome.ids["squatted"]
    assert len(_stored(outcome.de_records, "NL", mid)) == 1
    assert len(_stored(outcome.de_records, "FR", mid)) == 1
    assert not [q for q in outcome.de_quarantine if q.reason == "replayed"]


def test_one_message_cannot_open_to_another_content_key(outcome: Outcome) -> None:
    """NL, whose wrapped key holds a content key other than the committed one, quarantines
    the record as key_commitment_mismatch; DE, who got the committed key, stores it."""
    mid = outcome.ids["commitment"]
    assert [q.reason for q in outcome.nl_quarantine].count("key_commitment_mismatch") == 1
    assert _stored(outcome.nl_records, "FR", mid) == []
    assert len(_stored(outcome.de_records, "FR", mid)) == 1


def test_a_key_wrapped_for_an_unlisted_node_is_refused(outcome: Outcome) -> None:
    """A body also wrapped for NL while listing DE only: refused by DE and NL alike."""
    mid = outcome.ids["hidden"]
    assert _stored(outcome.de_records, "FR", mid) == []
    assert _stored(outcome.nl_records, "FR", mid) == []
    assert "wrapped_keys_mismatch" in [q.reason for q in outcome.de_quarantine]


def test_a_revoked_key_backdated_before_its_revocation_is_refused(outcome: Outcome) -> None:
    """The stolen key, revoked an hour ago, with created_at a minute before: revoked_key,
    judged at the broker's append time."""
    mid = outcome.ids["backdated"]
    assert _stored(outcome.de_records, "FR", mid) == []
    assert "revoked_key" in [q.reason for q in outcome.de_quarantine]


def test_an_expired_key_with_created_at_inside_its_window_is_refused(outcome: Outcome) -> None:
    """NL's key that expired an hour ago, created_at inside its window: key_not_valid_at_time."""
    mid = outcome.ids["expired"]
    assert _stored(outcome.de_records, "NL", mid) == []
    assert "key_not_valid_at_time" in [q.reason for q in outcome.de_quarantine]


def test_created_at_and_message_id_must_agree_with_the_broker_clock(outcome: Outcome) -> None:
    """created_at 30 minutes ahead of the append time: from_the_future; a message id whose
    UUIDv7 time is two hours after created_at: id_time_mismatch."""
    assert _stored(outcome.de_records, "FR", outcome.ids["ahead"]) == []
    assert _stored(outcome.de_records, "FR", outcome.ids["odd_id"]) == []
    reasons = [q.reason for q in outcome.de_quarantine]
    assert "from_the_future" in reasons
    assert "id_time_mismatch" in reasons


async def test_a_topic_stamped_with_the_producers_time_is_refused(
    live_federation: Federation, kafka_bootstrap: str
) -> None:
    """On a topic created with CreateTime (before v2, or by hand) a thief could choose the
    record's time along with created_at: the node refuses such records (not_append_time)."""
    fed = live_federation
    await create_topics(kafka_bootstrap, [fed.topic()], partitions=1)  # CreateTime
    de = make_node(fed, "DE")
    await de.start()
    try:
        then = datetime.now(UTC) - timedelta(hours=1)
        old = fed.member("FR").alert(then, title="dated by its producer")
        stamp = int(then.timestamp() * 1000)
        await produce(
            kafka_bootstrap, [(fed.topic(), old.key, old.value, 0)], timestamps_ms=[stamp]
        )
        await de.wait_until(lambda: de.metrics.quarantined.value("not_append_time") >= 1, 30)
        assert await de.store.list_records(topic=fed.topic()) == []
    finally:
        await de.stop()
