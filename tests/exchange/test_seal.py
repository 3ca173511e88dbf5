"""The recipe: seal, verify_record and open_record (exchange.seal)."""

from __future__ import annotations

import hashlib
import pickle
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from exchange import codec
from exchange.chain import Link
from exchange.envelope import Envelope, encode_envelope
from exchange.errors import ExchangeError, InputError, Reason, VerificationError, WireError
from exchange.ids import KeyId, NodeId, Topic
from exchange.keys import SigningKey
from exchange.models import HandlingCode, Tlp
from exchange.seal import (
    SignatureChecked,
    Verified,
    check_signature,
    check_signatures,
    encode_payload,
    open_record,
    seal,
    seal_encoded,
    verify_record,
)
from exchange.topics import MessageType, TopicKind
from exchange.trust import KeyEntry, Member
from exchange.uuid7 import uuid7
from tests.helpers.federation import (
    NOW,
    Federation,
    handling,
    make_alert,
    make_federation,
    sample_payloads,
)


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return make_federation(tmp_path)


def _resign(fed: Federation, envelope: Envelope, sender: str = "FR") -> bytes:
    """What a misbehaving member could publish: any envelope, validly signed."""
    body = encode_envelope(envelope)
    key = fed.nodes[NodeId(sender)].signing
    return codec.encode_signed(body, key.sign(body), key.key_id)


def _reason(
    fed: Federation, value: bytes, *, key: bytes | None, topic: str | None = None
) -> Reason:
    """The reason verify_record gives for ``value`` (read on ``topic`` with record key ``key``)."""
    with pytest.raises(ExchangeError) as info:
        verify_record(value, topic=topic or fed.topic(), key=key, trust=fed.trust, now=NOW)
    return info.value.reason


@pytest.mark.parametrize("recipients", [(), ("DE",)], ids=["plain", "encrypted"])
@pytest.mark.parametrize("message_type", list(MessageType))
def test_every_message_type_round_trips(
    fed: Federation, message_type: MessageType, recipients: tuple[str, ...]
) -> None:
    """Each message type sealed by FR (plain or for DE) opens at DE to an equal payload."""
    payload = sample_payloads()[message_type]
    sealed = fed.seal(payload, "FR", recipients=recipients)
    opened = fed.open(sealed, "DE")
    assert opened.payload == payload
    env = opened.verified.envelope
    assert env == sealed.envelope
    assert env.message_type is message_type
    assert env.sender == "FR"
    assert env.created_at == NOW
    assert opened.verified.key_id == fed.nodes[NodeId("FR")].signing.key_id
    assert opened.verified.envelope_hash == sealed.envelope_hash


def test_record_key_and_hash_are_those_of_the_envelope(fed: Federation) -> None:
    """The Kafka key is the UTF-8 of Envelope.key and the hash is SHA-256 of the signed bytes."""
    alert = make_alert()
    sealed = fed.seal(alert, "FR")
    assert sealed.key == str(alert.alert_id).encode()
    envelope_bytes, _, _ = codec.decode_signed(sealed.value)
    assert sealed.envelope_hash == hashlib.sha256(envelope_bytes).digest()
    assert envelope_bytes[:2] == b"\xc3\x01"


def test_chain_links_follow_per_topic(fed: Federation) -> None:
    """A sender's envelopes on a topic count 1, 2, 3 and each carries the previous hash."""
    first = fed.seal_alert("FR")
    second = fed.seal_alert("FR")
    other_topic = fed.seal(sample_payloads()[MessageType.BLACKLIST_DELTA], "FR")
    assert (first.envelope.sequence, first.envelope.previous_hash) == (1, None)
    assert (second.envelope.sequence, second.envelope.previous_hash) == (2, first.envelope_hash)
    assert other_topic.envelope.sequence == 1
    assert fed.verify(second).envelope.previous_hash == first.envelope_hash


def test_message_id_is_a_uuid7_of_created_at(fed: Federation) -> None:
    """The message id is a UUIDv7 whose time is created_at (millisecond precision)."""
    env = fed.seal_alert("FR", now=NOW + timedelta(microseconds=1234)).envelope
    assert env.message_id.version == 7
    assert env.message_id.int >> 80 == int(NOW.timestamp() * 1000) + 1
    assert env.created_at == NOW + timedelta(milliseconds=1)


def test_signed_by_another_nodes_key_is_sender_key_mismatch(fed: Federation) -> None:
    """A record claiming sender FR but signed with DE's key is SENDER_KEY_MISMATCH."""
    forged = fed.seal_alert("FR", signer=fed.nodes[NodeId("DE")].signing)
    with pytest.raises(VerificationError) as info:
        fed.verify(forged)
    assert info.value.reason is Reason.SENDER_KEY_MISMATCH


def test_key_outside_the_trust_list_is_unknown_key(fed: Federation) -> None:
    """A record signed by a key the trust list does not name is UNKNOWN_KEY."""
    rogue = fed.seal_alert("FR", signer=SigningKey.generate())
    with pytest.raises(VerificationError) as info:
        fed.verify(rogue)
    assert info.value.reason is Reason.UNKNOWN_KEY


def test_sender_not_a_member_is_unknown_sender(fed: Federation) -> None:
    """A member's key signing for a sender that is not a member is UNKNOWN_SENDER."""
    sealed = seal(
        make_alert(),
        signer=fed.nodes[NodeId("FR")].signing,
        sender=NodeId("XX"),
        topic=fed.topic(),
        link=Link(1, None),
        handling=handling(),
        now=NOW,
    )
    with pytest.raises(VerificationError) as info:
        fed.verify(sealed)
    assert info.value.reason is Reason.UNKNOWN_SENDER


def test_message_created_after_revocation_is_refused(fed: Federation) -> None:
    """A key revoked at T refuses messages created at or after T, and accepts earlier ones."""
    fr = fed.nodes[NodeId("FR")].signing
    before = fed.seal_alert("FR", now=NOW - timedelta(seconds=1))
    at = fed.seal_alert("FR", now=NOW)
    fed.publish_trust(fed.trust.revoke(fr.key_id, NOW, "compromised"))
    assert fed.verify(before).envelope.sender == "FR"
    with pytest.raises(VerificationError) as info:
        fed.verify(at)
    assert info.value.reason is Reason.REVOKED_KEY


def test_message_outside_the_key_validity_is_refused(fed: Federation) -> None:
    """A message created after valid_until (or before valid_from) is KEY_NOT_VALID_AT_TIME."""
    fr = fed.nodes[NodeId("FR")].signing
    fed.publish_trust(
        fed.trust.with_key_window(
            fr.key_id, NOW - timedelta(days=10), NOW - timedelta(days=1), issued_at=NOW
        )
    )
    with pytest.raises(VerificationError) as info:
        fed.verify(fed.seal_alert("FR"))
    assert info.value.reason is Reason.KEY_NOT_VALID_AT_TIME
    early = fed.seal_alert("FR", now=NOW - timedelta(days=11))
    with pytest.raises(VerificationError) as info:
        fed.verify(early)
    assert info.value.reason is Reason.KEY_NOT_VALID_AT_TIME


def test_rotated_key_verifies_old_and_new_messages(fed: Federation) -> None:
    """After a key rotation both the retired key (for its window) and the new key verify."""
    old = fed.nodes[NodeId("FR")].signing
    new = SigningKey.generate()
    m = fed.trust.member(NodeId("FR"))
    rotated = Member(
        m.node_id,
        m.name,
        (
            KeyEntry(old.key_id, old.public_bytes, NOW - timedelta(days=1), NOW),
            KeyEntry.for_key(new.public_bytes, NOW),
        ),
        m.encryption_keys,
    )
    old_msg = fed.seal_alert("FR", now=NOW - timedelta(hours=1))
    fed.publish_trust(fed.trust.with_member(rotated, issued_at=NOW))
    new_msg = fed.seal_alert("FR", signer=new, now=NOW + timedelta(hours=1))
    assert fed.verify(old_msg, now=NOW + timedelta(hours=1)).key_id == old.key_id
    assert fed.verify(new_msg, now=NOW + timedelta(hours=1)).key_id == new.key_id


def test_record_moved_to_another_topic_or_key_is_refused(fed: Federation) -> None:
    """Re-published on another topic: WRONG_TOPIC; under another record key: WRONG_KEY."""
    sealed = fed.seal_alert("FR")
    other = Topic(fed.topic().replace("ncp.", "other."))
    with pytest.raises(VerificationError) as info:
        fed.verify(sealed, topic=other)
    assert info.value.reason is Reason.WRONG_TOPIC
    with pytest.raises(VerificationError) as info:
        fed.verify(sealed, key=b"another-key")
    assert info.value.reason is Reason.WRONG_KEY


def test_payload_signed_under_another_records_key_is_refused(fed: Federation) -> None:
    """An alert signed under a key other than its own alert id is WRONG_KEY on opening."""
    sealed = fed.seal_alert("FR")
    moved = sealed.envelope._replace(key="not-the-alert-id")
    value = _resign(fed, moved)
    with pytest.raises(VerificationError) as info:
        open_record(
            value,
            topic=moved.topic,
            key=b"not-the-alert-id",
            trust=fed.trust,
            now=NOW,
            reader=NodeId("DE"),
            decryption_key=fed.nodes[NodeId("DE")].encryption,
        )
    assert info.value.reason is Reason.WRONG_KEY
    assert info.value.field == "key"


def test_seal_refuses_a_key_other_than_the_payloads_own(fed: Federation) -> None:
    """seal() will not put an alert under another record's key."""
    with pytest.raises(InputError) as info:
        seal(
            make_alert(),
            signer=fed.nodes[NodeId("FR")].signing,
            sender=NodeId("FR"),
            topic=fed.topic(),
            link=Link(1, None),
            handling=handling(),
            now=NOW,
            key="some-other-key",
        )
    assert info.value.reason is Reason.WRONG_KEY


def test_record_without_a_kafka_key_is_wrong_key(fed: Federation) -> None:
    """A record read without a Kafka key matches no envelope key."""
    sealed = fed.seal_alert("FR")
    assert _reason(fed, sealed.value, key=None) is Reason.WRONG_KEY


def test_type_not_allowed_on_topic(fed: Federation) -> None:
    """seal refuses an alert for the blacklist topic; a signed one there is TYPE_NOT_ALLOWED."""
    with pytest.raises(InputError) as info:
        fed.seal_alert("FR", topic=fed.topic(TopicKind.BLACKLIST))
    assert info.value.reason is Reason.TYPE_NOT_ALLOWED
    # A misbehaving member could still sign one: readers refuse it.
    sealed = fed.seal_alert("FR")
    topic = fed.topic(TopicKind.BLACKLIST)
    value = _resign(fed, sealed.envelope._replace(topic=topic))
    assert _reason(fed, value, topic=topic, key=sealed.key) is Reason.TYPE_NOT_ALLOWED
    value = _resign(fed, sealed.envelope._replace(topic=Topic("ncp.unknown.v1")))
    assert _reason(fed, value, topic="ncp.unknown.v1", key=sealed.key) is Reason.TYPE_NOT_ALLOWED


def test_record_from_the_future_is_refused(fed: Federation) -> None:
    """created_at beyond now + max_skew is FROM_THE_FUTURE; within the skew it passes."""
    sealed = fed.seal_alert("FR", now=NOW + timedelta(minutes=10))
    with pytest.raises(VerificationError) as info:
        fed.verify(sealed)
    assert info.value.reason is Reason.FROM_THE_FUTURE
    assert fed.verify(sealed, now=NOW + timedelta(minutes=6)).envelope.sender == "FR"


def test_handling_rules_are_enforced_at_seal(fed: Federation) -> None:
    """TLP:RED without recipients and H3 without a restriction cannot be sealed."""
    with pytest.raises(InputError) as info:
        fed.seal_alert("FR", handling=handling(Tlp.RED))
    assert info.value.reason is Reason.HANDLING_INCONSISTENT
    assert fed.open(
        fed.seal_alert("FR", handling=handling(Tlp.RED), recipients=["DE"]), "DE"
    ).payload
    h3 = fed.seal_alert("FR", handling=handling(code=HandlingCode.H3, restriction="no court use"))
    assert fed.open(h3, "DE").verified.envelope.handling.restriction == "no court use"


def test_signed_but_inconsistent_handling_is_refused_by_readers(fed: Federation) -> None:
    """Signed TLP:RED for all, H3 without text, or recipients with a plain body: refused."""
    sealed = fed.seal_alert("FR")
    value = _resign(fed, sealed.envelope._replace(handling=handling(Tlp.RED)))
    assert _reason(fed, value, key=sealed.key) is Reason.HANDLING_INCONSISTENT
    h3 = handling().model_construct(**{**handling().model_dump(), "code": HandlingCode.H3})
    value = _resign(fed, sealed.envelope._replace(handling=h3))
    assert _reason(fed, value, key=sealed.key) is Reason.HANDLING_INCONSISTENT
    value = _resign(fed, sealed.envelope._replace(recipients=(NodeId("DE"),)))
    assert _reason(fed, value, key=sealed.key) is Reason.HANDLING_INCONSISTENT


def test_retraction_needs_the_key_it_retracts(fed: Federation) -> None:
    """A Retraction has no key of its own: seal asks for one."""
    with pytest.raises(InputError, match="key"):
        seal(
            sample_payloads()[MessageType.RETRACTION],
            signer=fed.nodes[NodeId("FR")].signing,
            sender=NodeId("FR"),
            topic=fed.topic(),
            link=Link(1, None),
            handling=handling(),
            now=NOW,
        )


def test_signature_of_an_unknown_key_id_string(fed: Federation) -> None:
    """A record naming a key id absent from the list is UNKNOWN_KEY before any crypto."""
    sealed = fed.seal_alert("FR")
    envelope, signature, _ = codec.decode_signed(sealed.value)
    value = codec.encode_signed(envelope, signature, KeyId("not-a-key"))
    assert _reason(fed, value, key=sealed.key) is Reason.UNKNOWN_KEY


def test_garbage_is_a_wire_error(fed: Federation) -> None:
    """Bytes that are not a SignedEnvelope raise WireError(MALFORMED)."""
    with pytest.raises(WireError) as info:
        fed.verify(fed.seal_alert("FR"), value=b"hello")
    assert info.value.reason is Reason.MALFORMED


@pytest.mark.parametrize(("sequence", "with_hash"), [(1, True), (2, False), (0, False), (-3, True)])
def test_impossible_chain_positions_are_malformed(
    fed: Federation, sequence: int, with_hash: bool
) -> None:
    """A signed envelope whose sequence and previous_hash contradict each other is MALFORMED."""
    sealed = fed.seal_alert("FR")
    env = sealed.envelope._replace(
        sequence=sequence, previous_hash=b"h" * 32 if with_hash else None
    )
    with pytest.raises(WireError) as info:
        fed.verify(sealed, value=_resign(fed, env))
    assert info.value.reason is Reason.MALFORMED
    assert info.value.field == "sequence"


def test_sealing_encoded_bytes_gives_the_same_record(fed: Federation) -> None:
    """seal_encoded() on a payload's bytes writes exactly what seal() writes for the payload."""
    alert = make_alert()
    common = {
        "signer": fed.nodes[NodeId("FR")].signing,
        "sender": NodeId("FR"),
        "topic": fed.topic(),
        "link": Link(1, None),
        "handling": handling(),
        "now": NOW,
        "message_id": UUID("01890a5d-ac96-774b-bcce-b302099a8057"),
    }
    direct = seal(alert, **common)  # type: ignore[arg-type]
    encoded = seal_encoded(
        encode_payload(alert),
        MessageType.OFFENCE_ALERT,
        key=str(alert.alert_id),
        **common,  # type: ignore[arg-type]
    )
    assert encoded.value == direct.value
    assert encoded.envelope_hash == direct.envelope_hash


def test_no_caller_can_build_a_signature_checked_or_verified(fed: Federation) -> None:
    """SignatureChecked and Verified come from exchange.seal's checks only: building one by
    hand (constructor, _make, _replace, unpickling) raises TypeError, so none skips them."""
    sealed = fed.seal_alert("FR")
    checked = check_signature(sealed.value, fed.trust)
    verified = fed.verify(sealed)
    assert checked.owner == "FR"
    assert verified.envelope.sender == "FR"
    with pytest.raises(TypeError, match=r"exchange\.seal only"):
        SignatureChecked(b"any envelope", checked.key_id, checked.owner, checked.entry)
    with pytest.raises(TypeError):
        SignatureChecked._make(tuple(checked))
    with pytest.raises(TypeError):
        checked._replace(envelope_bytes=b"another envelope")
    with pytest.raises(TypeError):
        Verified(verified.envelope, b"", b"", verified.key_id)
    with pytest.raises(TypeError):
        verified._replace(envelope=verified.envelope)
    with pytest.raises(TypeError):
        pickle.dumps(verified)


def test_created_at_is_judged_against_the_append_time_both_ways(fed: Federation) -> None:
    """created_at more than max_skew before the append time is backdated, more than max_skew
    after it from_the_future; within the skew either way it verifies."""
    sealed = fed.seal_alert("FR")
    created = sealed.envelope.created_at

    def reason(appended: datetime) -> Reason | None:
        try:
            verify_record(
                sealed.value,
                topic=sealed.envelope.topic,
                key=sealed.key,
                trust=fed.trust,
                now=appended,
                appended_at=appended,
            )
        except ExchangeError as exc:
            return exc.reason
        return None

    assert reason(created + timedelta(minutes=4)) is None
    assert reason(created - timedelta(minutes=4)) is None
    assert reason(created + timedelta(minutes=6)) is Reason.BACKDATED
    assert reason(created - timedelta(minutes=6)) is Reason.FROM_THE_FUTURE


def test_a_revoked_key_signs_nothing_appended_after_its_revocation(fed: Federation) -> None:
    """Revoked at T: a record created a minute before T verifies when appended before T and
    is revoked_key when appended after T, whatever its created_at says."""
    revoked_at = NOW
    sealed = fed.seal_alert("FR", now=revoked_at - timedelta(minutes=1))
    key_id = fed.nodes[NodeId("FR")].signing.key_id
    trust = fed.trust.revoke(KeyId(key_id), revoked_at, "stolen", issued_at=revoked_at)
    for appended, expected in (
        (revoked_at - timedelta(seconds=30), None),
        (revoked_at + timedelta(minutes=3), Reason.REVOKED_KEY),
    ):
        try:
            verify_record(
                sealed.value,
                topic=sealed.envelope.topic,
                key=sealed.key,
                trust=trust,
                now=appended,
                appended_at=appended,
            )
            found = None
        except ExchangeError as exc:
            found = exc.reason
        assert found is expected


def test_message_id_time_must_agree_with_created_at(fed: Federation) -> None:
    """A message id from an hour after created_at, or not a UUIDv7, is id_time_mismatch."""
    for mid in (uuid7(NOW + timedelta(hours=1)), uuid4()):
        sealed = seal(
            make_alert(),
            signer=fed.nodes[NodeId("FR")].signing,
            sender=NodeId("FR"),
            topic=fed.topic(),
            link=Link(1, None),
            handling=handling(),
            now=NOW,
            message_id=mid,
        )
        assert _reason(fed, sealed.value, key=sealed.key) is Reason.ID_TIME_MISMATCH


def test_check_signatures_gives_each_value_the_verdict_of_check_signature(
    fed: Federation,
) -> None:
    """One batch check: good values come back SignatureChecked, the rest as the error
    check_signature raises for them alone (returned, not raised), in order."""
    values = [fed.seal_alert("FR").value for _ in range(40)]
    tampered = bytearray(values[3])
    tampered[-20] ^= 0x01  # inside the signature
    values[3] = bytes(tampered)
    values[5] = fed.seal_alert("FR", signer=SigningKey.generate()).value
    values[7] = b"\x00not a signed envelope"
    batched = check_signatures(values, fed.trust)
    for value, verdict in zip(values, batched, strict=True):
        try:
            alone: SignatureChecked | Reason = check_signature(value, fed.trust)
        except ExchangeError as exc:
            alone = exc.reason
        if isinstance(verdict, ExchangeError):
            assert verdict.reason == alone
        else:
            assert isinstance(verdict, SignatureChecked)
            assert verdict == alone
    reasons = {i: v.reason for i, v in enumerate(batched) if isinstance(v, ExchangeError)}
    assert reasons == {3: Reason.BAD_SIGNATURE, 5: Reason.UNKNOWN_KEY, 7: Reason.MALFORMED}
    assert check_signatures(values[:2], [fed.trust, fed.trust]) == batched[:2]
    assert check_signatures([], fed.trust) == []
