"""The pure pipeline: each raw Kafka record ends stored, quarantined with its reason, or skipped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from exchange.codec import decode_signed, encode
from exchange.errors import Reason
from exchange.ids import NodeId
from exchange.keys import SigningKey
from exchange.seal import Opened, Sealed
from exchange.topics import TopicKind, topic_name
from nodes.config import TopicRules
from nodes.pipeline import (
    INTERNAL_ERROR,
    BatchOutcome,
    PipelineContext,
    RawRecord,
    Skipped,
    TopicPolicy,
    open_own,
    open_raw,
    open_raws,
    own_claim,
    own_key_ids,
    process,
    refuse_unsent,
)
from nodes.rules import Incoming, Rule, build_chain
from nodes.store.base import AuditAction, QuarantineEntry
from tests.helpers.federation import ALERTS, NOW, Federation, Member, make_alert


def context(
    fed: Federation, *, purge: bool = False, extra: Sequence[Rule] = (), **rules: Any
) -> PipelineContext:
    chain = (*build_chain(TopicRules(**rules), NodeId("DE")), *extra)
    return PipelineContext(
        node=NodeId("DE"),
        trust=fed.trust,
        decryption_key=fed.nodes[NodeId("DE")].encryption,
        policies={ALERTS: TopicPolicy(chain=chain, purge_on_retraction=purge)},
    )


def raw(sealed: Sealed, offset: int = 0, *, topic: str = ALERTS, partition: int = 0) -> RawRecord:
    return RawRecord(topic, partition, offset, sealed.key, sealed.value)


def run(ctx: PipelineContext, *raws: RawRecord, stored: Sequence[Any] = ()) -> BatchOutcome:
    return process(raws, ctx, NOW, stored)


def only_reason(outcome: BatchOutcome) -> str:
    (entry,) = outcome.quarantined
    assert not outcome.records
    return entry.reason


@pytest.fixture
def fr(federation: Federation) -> Member:
    return federation.member("FR")


def test_valid_alert_is_stored_with_its_envelope_facts(federation: Federation, fr: Member) -> None:
    """A verified alert passing the rules becomes a StoredRecord; the next offset is kept."""
    alert = make_alert(NOW)
    sealed = fr.seal(alert, tlp="AMBER", code="H1")
    out = run(context(federation), raw(sealed, offset=41, partition=2))
    (record,) = out.records
    assert record.message_id == sealed.envelope.message_id
    assert (record.topic, record.partition, record.offset) == (ALERTS, 2, 41)
    assert (record.sender, record.message_type, record.category) == (
        "FR",
        "OffenceAlert",
        "FRAUDULENT_SALES",
    )
    assert (record.tlp, record.handling_code, record.sequence) == ("AMBER", "H1", 1)
    assert record.key == str(alert.alert_id)
    assert record.payload["title"] == alert.title
    assert record.envelope_hash == sealed.envelope_hash
    assert record.expires_at is None
    assert out.offsets == {(ALERTS, 2): 42}
    assert not out.quarantined
    assert not out.skipped


def test_garbage_and_tombstones_are_quarantined_as_malformed(federation: Federation) -> None:
    """Bytes that are not a SignedEnvelope, and records without a value, are malformed."""
    ctx = context(federation)
    garbage = RawRecord(ALERTS, 0, 5, b"k", b"\x00not avro at all")
    tombstone = RawRecord(ALERTS, 0, 6, b"k", None)
    out = run(ctx, garbage, tombstone)
    assert [q.reason for q in out.quarantined] == [Reason.MALFORMED.value] * 2
    assert out.quarantined[0].raw == b"\x00not avro at all"
    assert out.offsets == {(ALERTS, 0): 7}


def test_tampered_record_is_quarantined_as_bad_signature(
    federation: Federation, fr: Member
) -> None:
    """A changed byte in the signed envelope, or in the signature, fails verification."""
    sealed = fr.alert()
    for index in (30, -20):  # inside the envelope's message id; inside the signature
        value = bytearray(sealed.value)
        value[index] ^= 0x01
        tampered = RawRecord(ALERTS, 0, 0, sealed.key, bytes(value))
        assert only_reason(run(context(federation), tampered)) == Reason.BAD_SIGNATURE.value


def test_record_moved_to_another_topic_or_key_is_refused(
    federation: Federation, fr: Member
) -> None:
    """The envelope names its topic and key: a record replayed elsewhere fails verification."""
    sealed = fr.alert()
    other = topic_name(TopicKind.BLACKLIST, "ncp")
    ctx = context(federation)
    ctx.policies[other] = ctx.policies[ALERTS]  # type: ignore[index]
    assert only_reason(run(ctx, raw(sealed, topic=other))) == Reason.WRONG_TOPIC.value
    moved = RawRecord(ALERTS, 0, 0, b"another-key", sealed.value)
    assert only_reason(run(ctx, moved)) == Reason.WRONG_KEY.value


def test_signer_outside_the_trust_list_is_unknown_key(federation: Federation) -> None:
    """A record signed with a key the trust list does not name is refused."""
    sealed = federation.member("FR", SigningKey.generate()).alert()
    assert only_reason(run(context(federation), raw(sealed))) == Reason.UNKNOWN_KEY.value


def test_record_from_the_future_is_refused(federation: Federation, fr: Member) -> None:
    """A record created well after `now` (beyond the allowed skew) is quarantined."""
    sealed = fr.alert(now=NOW + timedelta(hours=1))
    assert only_reason(run(context(federation), raw(sealed))) == Reason.FROM_THE_FUTURE.value


def test_replays_are_quarantined(federation: Federation, fr: Member) -> None:
    """A message id already stored, or met earlier in the batch, is quarantined as replayed."""
    sealed = fr.alert()
    ctx = context(federation)
    out = run(ctx, raw(sealed, 0), raw(sealed, 1))
    assert len(out.records) == 1
    (dup,) = out.quarantined
    assert (dup.reason, dup.offset, dup.message_id) == ("replayed", 1, sealed.envelope.message_id)
    again = run(ctx, raw(sealed, 2), stored=[("FR", sealed.envelope.message_id)])
    assert only_reason(again) == Reason.REPLAYED.value


def test_rule_rejection_is_quarantined_with_the_rule_detail(
    federation: Federation, fr: Member
) -> None:
    """A record refused by a rule is not stored; quarantine says which rule and why."""
    sealed = fr.alert()
    out = run(context(federation, accept_senders=["NL"]), raw(sealed))
    (entry,) = out.quarantined
    assert entry.reason == Reason.RULE_REJECTED.value
    assert entry.detail.startswith("sender_not_accepted: sender FR")
    assert (entry.sender, entry.message_id) == ("FR", sealed.envelope.message_id)


def test_restricted_records_are_opened_by_recipients_and_skipped_by_others(
    federation: Federation, fr: Member
) -> None:
    """A TLP:RED alert for DE is decrypted and stored at DE; one for NL is skipped at DE."""
    for_de = fr.alert(title="Red for DE", tlp="RED", code="H2", recipients=["DE"])
    for_nl = fr.alert(title="Red for NL", tlp="RED", code="H2", recipients=["NL"])
    out = run(context(federation), raw(for_de, 0), raw(for_nl, 1))
    (record,) = out.records
    assert record.payload["title"] == "Red for DE"
    assert record.recipients == ("DE",)
    (skipped,) = out.skipped
    assert skipped == Skipped(ALERTS, 0, 1, "addressed_to_others", for_nl.envelope.message_id)
    assert not out.quarantined
    assert out.offsets == {(ALERTS, 0): 2}


def test_minimisation_and_retention_shape_the_stored_record(
    federation: Federation, fr: Member
) -> None:
    """Dropped fields are gone from the stored payload; expires_at follows retention_days."""
    sealed = fr.alert()
    ctx = context(federation, drop_fields=["description", "case_reference"], retention_days=10)
    (record,) = run(ctx, raw(sealed)).records
    assert "description" not in record.payload
    assert "case_reference" not in record.payload
    assert record.payload["title"] == "Fake web shop"
    assert record.expires_at == sealed.envelope.created_at + timedelta(days=10)


@pytest.mark.parametrize("purge", [False, True])
def test_retraction_yields_an_order_for_the_store(
    federation: Federation, fr: Member, purge: bool
) -> None:
    """A Retraction is stored and orders its target withdrawn or purged as configured."""
    original = fr.alert()
    retraction = fr.retraction(original)
    out = run(context(federation, purge=purge), raw(original, 0), raw(retraction, 1))
    assert [r.message_type for r in out.records] == ["OffenceAlert", "Retraction"]
    (order,) = out.retractions
    assert order.retracted_message_id == original.envelope.message_id
    assert order.retraction_message_id == retraction.envelope.message_id
    assert (order.by_sender, order.purge, order.at) == ("FR", purge, NOW)


def test_a_bug_in_a_rule_quarantines_one_record_and_never_raises(
    federation: Federation, fr: Member
) -> None:
    """An unexpected exception becomes an internal_error quarantine entry; the batch goes on."""
    bad = fr.alert(title="boom")
    good = fr.alert(title="fine")

    def explode(item: Incoming) -> Incoming:
        if item.payload is not None and item.payload.get("title") == "boom":
            raise RuntimeError("rule bug")
        return item

    out = run(context(federation, extra=[explode]), raw(bad, 0), raw(good, 1))
    (entry,) = out.quarantined
    assert (entry.reason, entry.detail) == (INTERNAL_ERROR, "RuntimeError: rule bug")
    assert [r.payload["title"] for r in out.records] == ["fine"]
    ((failed_raw, error),) = out.internal_errors
    assert failed_raw.offset == 0
    assert isinstance(error, RuntimeError)


def test_topic_without_a_policy_is_quarantined(federation: Federation, fr: Member) -> None:
    """A record from a topic the node does not read is refused rather than stored."""
    sealed = fr.alert()
    ctx = PipelineContext(NodeId("DE"), federation.trust, None, policies={})
    assert only_reason(run(ctx, raw(sealed))) == Reason.WRONG_TOPIC.value


def test_collection_is_audited_per_sender_and_topic(federation: Federation, fr: Member) -> None:
    """One COLLECTION event per (sender, topic) names every stored message id of the batch."""
    nl = federation.member("NL")
    sealed = [fr.alert(), nl.alert(), fr.alert()]
    out = run(context(federation), *(raw(s, i) for i, s in enumerate(sealed)))
    events = out.collection_events("node:DE/consumer", NOW)
    assert {e.action for e in events} == {AuditAction.COLLECTION}
    by_sender = {e.details["sender"]: e.details["message_ids"] for e in events}
    assert by_sender == {
        "FR": [str(sealed[0].envelope.message_id), str(sealed[2].envelope.message_id)],
        "NL": [str(sealed[1].envelope.message_id)],
    }


def test_own_messages_can_be_skipped_before_verification(federation: Federation) -> None:
    """With own_messages = skip, records naming this node's own keys are skipped, not opened."""
    own = frozenset(k.key_id for k in federation.trust.member(NodeId("DE")).signing_keys)
    ctx = PipelineContext(
        NodeId("DE"),
        federation.trust,
        None,
        policies=context(federation).policies,
        skip_key_ids=own,
    )
    mine = federation.member("DE").alert()
    theirs = federation.member("NL").alert()
    out = run(ctx, raw(mine, 0), raw(theirs, 1), RawRecord(ALERTS, 0, 2, b"k", b"junk"))
    assert [s.reason for s in out.skipped] == ["own_message"]
    assert [r.sender for r in out.records] == ["NL"]
    assert [q.reason for q in out.quarantined] == [Reason.MALFORMED.value]
    assert out.offsets == {(ALERTS, 0): 3}


def test_own_records_in_the_outbox_open_without_a_signature_check(federation: Federation) -> None:
    """A record naming this node's own key whose envelope hash is in its outbox opens
    without its signature being checked (spoilt signature bytes do not matter: the envelope
    is byte for byte what this node signed); one not in the outbox is left to verification."""
    ctx = context(federation)
    mine = federation.member("DE").alert()
    record = raw(mine)
    assert own_claim(record, own_key_ids(ctx)) == mine.envelope_hash
    assert own_claim(raw(federation.member("NL").alert()), own_key_ids(ctx)) is None
    envelope, signature, key_id = decode_signed(record.value or b"")
    spoilt = encode(
        "SignedEnvelope",
        {"envelope": envelope, "signature": bytes(64 - len(b"x")) + b"x", "key_id": key_id},
    )
    opened = open_own(RawRecord(ALERTS, 0, 0, mine.key, spoilt), ctx, NOW, {mine.envelope_hash})
    assert isinstance(opened, Opened)
    assert opened.verified.envelope.message_id == mine.envelope.message_id
    assert open_own(record, ctx, NOW, set()) is None
    assert signature != bytes(64 - len(b"x")) + b"x"


def test_an_own_key_record_with_a_padded_key_id_length_is_still_claimed(
    federation: Federation,
) -> None:
    """A thief cannot slip a record past the outbox match by re-framing it: with the key
    id's length as a padded varint it still names this node's key, so it is claimed (and,
    not in the outbox, verified and quarantined); another member's record is not."""
    ctx = context(federation)
    mine = federation.member("DE").alert()
    value = mine.value
    key_id = decode_signed(value)[2].encode()
    assert len(key_id) < 64  # one varint byte: 2 x length
    padded = value[: -len(key_id) - 1] + bytes([0x80 | (2 * len(key_id)), 0]) + key_id
    assert decode_signed(padded) == decode_signed(value)
    assert own_claim(raw(mine), own_key_ids(ctx)) == mine.envelope_hash
    record = RawRecord(ALERTS, 0, 0, mine.key, padded)
    assert own_claim(record, own_key_ids(ctx)) == mine.envelope_hash
    entry = refuse_unsent(record, open_raw(record, ctx, NOW), NOW)
    assert isinstance(entry, QuarantineEntry)
    assert entry.reason == Reason.NOT_IN_OWN_OUTBOX.value


def test_a_record_signed_with_the_own_key_but_never_sent_is_quarantined(
    federation: Federation,
) -> None:
    """Verified under this node's own key yet not in its outbox: someone else holds the key;
    the record is quarantined as not_in_own_outbox, never stored."""
    ctx = context(federation)
    stolen = federation.member("DE").alert()
    record = raw(stolen)
    entry = refuse_unsent(record, open_raw(record, ctx, NOW), NOW)
    assert isinstance(entry, QuarantineEntry)
    assert entry.reason == Reason.NOT_IN_OWN_OUTBOX.value
    assert entry.message_id == stolen.envelope.message_id
    bad = RawRecord(ALERTS, 0, 1, b"k", b"junk")
    assert refuse_unsent(bad, open_raw(bad, ctx, NOW), NOW).reason == Reason.MALFORMED.value


def test_a_batch_check_quarantines_only_its_bad_records_with_their_reasons(
    federation: Federation, fr: Member
) -> None:
    """open_raws verifies a batch in one check: each record ends as open_raw alone ends it."""
    ctx = context(federation)
    stranger = federation.member("FR", SigningKey.generate())  # a key nobody listed
    raws = [raw(fr.alert(), offset=i) for i in range(300)]
    value = bytearray(raws[10].value or b"")
    value[-20] ^= 0x01  # inside the signature
    raws[10] = replace(raws[10], value=bytes(value))
    raws[20] = replace(raws[20], value=b"\x00not avro at all")
    raws[30] = replace(raws[30], value=None)
    raws[40] = raw(stranger.alert(), offset=40)
    raws[50] = replace(raws[50], key=b"another-key")
    batched = open_raws(raws, ctx, NOW)
    alone = [open_raw(r, ctx, NOW) for r in raws]
    reasons = {i: o.reason for i, o in enumerate(batched) if isinstance(o, QuarantineEntry)}
    assert reasons == {
        10: Reason.BAD_SIGNATURE.value,
        20: Reason.MALFORMED.value,
        30: Reason.MALFORMED.value,
        40: Reason.UNKNOWN_KEY.value,
        50: Reason.WRONG_KEY.value,
    }
    assert batched == alone
