"""Wire v2: encrypted bodies bound to their envelope, key commitment, wrapped keys = recipients.

Each attack of issue 9 against the v1 recipe, written as what a misbehaving member (MM,
here NL) can build with its own valid key; the broker-level versions are in
tests/node/test_wire_attacks.py.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from io import BytesIO
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange import codec, crypto
from exchange.audit.digest import digest_batch
from exchange.crypto import EncryptedBody, Entropy, Recipient
from exchange.envelope import Envelope, decode_envelope, encode_envelope, header_digest
from exchange.errors import ConfidentialityError, ExchangeError, Reason
from exchange.ids import NodeId
from exchange.models import HandlingCode, Tlp
from exchange.seal import open_record
from tests.helpers.federation import NOW, Federation, handling, make_federation


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return make_federation(tmp_path)


def _signed(fed: Federation, envelope: Envelope, signer: str) -> bytes:
    data = encode_envelope(envelope)
    key = fed.nodes[NodeId(signer)].signing
    return codec.encode_signed(data, key.sign(data), key.key_id)


def _open_as(fed: Federation, value: bytes, envelope: Envelope, reader: str) -> Any:
    return open_record(
        value,
        topic=envelope.topic,
        key=envelope.key.encode(),
        trust=fed.trust,
        now=NOW,
        reader=NodeId(reader),
        decryption_key=fed.nodes[NodeId(reader)].encryption,
    )


def _recipient(fed: Federation, node: str) -> Recipient:
    key = fed.nodes[NodeId(node)].encryption
    return Recipient(NodeId(node), key.key_id, key.public_bytes)


def _red_for_de(fed: Federation) -> Envelope:
    sealed = fed.seal_alert("FR", recipients=["DE"], handling=handling(Tlp.RED))
    return sealed.envelope


def test_a_body_transplanted_into_another_members_envelope_opens_nowhere(
    fed: Federation,
) -> None:
    """NL copies FR's TLP:RED body and id into its own CLEAR/H0 envelope: DE refuses it as
    body_not_bound (v1 opened it and stored it as NL's CLEAR record)."""
    original = _red_for_de(fed)
    chain = fed.seal_alert("NL").envelope  # NL's own chain position, for realism
    stolen = original._replace(
        sender=NodeId("NL"),
        handling=handling(Tlp.CLEAR, HandlingCode.H0),
        sequence=chain.sequence + 1,
        previous_hash=bytes(32),
    )
    value = _signed(fed, stolen, "NL")
    with pytest.raises(ConfidentialityError) as info:
        _open_as(fed, value, stolen, "DE")
    assert info.value.reason is Reason.BODY_NOT_BOUND


def test_a_wrapped_key_for_an_unlisted_node_is_refused(fed: Federation) -> None:
    """A body that also wraps the key for NL, who is not listed, is refused before opening."""
    sealed = fed.seal_alert("FR", recipients=["DE", "NL"])
    hidden = sealed.envelope._replace(recipients=(NodeId("DE"),))
    value = _signed(fed, hidden, "FR")
    with pytest.raises(ExchangeError) as info:
        _open_as(fed, value, hidden, "DE")
    assert info.value.reason is Reason.WRAPPED_KEYS_MISMATCH
    assert "NL" in info.value.detail


def test_one_message_cannot_open_to_another_content_key_for_one_recipient(
    fed: Federation,
) -> None:
    """A sender wrapping for NL another content key than the one it commits to (so that,
    with a crafted ciphertext, NL would read another plaintext than DE) is refused at NL:
    key_commitment_mismatch. DE, who got the committed key, reads the message."""
    original = _red_for_de(fed)
    assert isinstance(original.body, EncryptedBody)
    de = fed.nodes[NodeId("DE")].encryption
    plaintext = crypto.decrypt_body(original.body, header_digest(original), NodeId("DE"), de)
    base = original._replace(recipients=(NodeId("DE"), NodeId("NL")))
    digest = header_digest(base)
    targets = [_recipient(fed, "DE"), _recipient(fed, "NL")]
    eph = bytes(range(1, 33))
    honest = crypto.encrypt_body(
        plaintext, digest, targets, entropy=Entropy(bytes(32), bytes(12), eph)
    )
    other = crypto.encrypt_body(
        b"another plaintext", digest, targets, entropy=Entropy(b"\x01" * 32, bytes(12), eph)
    )
    crafted = dataclasses.replace(
        honest, wrapped_keys=(honest.wrapped_keys[0], other.wrapped_keys[1])
    )
    env = base._replace(body=crafted)
    value = _signed(fed, env, "FR")
    with pytest.raises(ConfidentialityError) as info:
        _open_as(fed, value, env, "NL")
    assert info.value.reason is Reason.KEY_COMMITMENT_MISMATCH
    assert _open_as(fed, value, env, "DE").payload is not None


def test_the_commitment_is_checked_before_the_ciphertext(fed: Federation) -> None:
    """A content key that does open a ciphertext is still refused when it is not the
    committed one: the commitment, not the GCM tag, decides which key counts."""
    base = _red_for_de(fed)
    digest = header_digest(base)
    de = fed.nodes[NodeId("DE")].encryption
    body = crypto.encrypt_body(b"plaintext", digest, [_recipient(fed, "DE")])
    forged = dataclasses.replace(body, key_commitment=bytes(32))
    with pytest.raises(ConfidentialityError) as info:
        crypto.decrypt_body(forged, digest, NodeId("DE"), de)
    assert info.value.reason is Reason.KEY_COMMITMENT_MISMATCH


_FIELDS = (
    "message_id",
    "message_type",
    "topic",
    "key",
    "sender",
    "created_at",
    "sequence",
    "previous_hash",
    "recipients",
    "handling",
)


def _changed(env: Envelope, field: str, data: st.DataObject) -> Envelope:
    """``env`` with ``field`` set to another value drawn by hypothesis."""
    old = getattr(env, field)
    if field == "message_id":
        new: Any = UUID(bytes=data.draw(st.binary(min_size=16, max_size=16)))
    elif field == "message_type":
        new = data.draw(st.sampled_from([m for m in type(old) if m != old]))
    elif field in ("topic", "key", "sender"):
        new = data.draw(st.text(min_size=0, max_size=30))
    elif field == "created_at":
        new = old + timedelta(milliseconds=data.draw(st.integers(-(10**9), 10**9)))
    elif field == "sequence":
        new = data.draw(st.integers(1, 2**40))
    elif field == "previous_hash":
        new = data.draw(st.one_of(st.none(), st.binary(min_size=32, max_size=32)))
    elif field == "recipients":
        new = tuple(data.draw(st.lists(st.sampled_from(["DE", "NL", "FR", "BE"]), max_size=4)))
    else:
        new = handling(
            data.draw(st.sampled_from(list(Tlp))),
            data.draw(st.sampled_from([HandlingCode.H0, HandlingCode.H1, HandlingCode.H2])),
        )
    changed = env._replace(**{field: new})
    if changed[:10] == env[:10]:  # drew the same value: change it in a way that must differ
        changed = env._replace(sequence=env.sequence + 1)
    return changed


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(field=st.sampled_from(_FIELDS), data=st.data())
def test_any_change_to_any_header_field_makes_the_body_unopenable(
    fed: Federation, field: str, data: st.DataObject
) -> None:
    """Whatever header field changes, and to whatever value, the body no longer opens."""
    env = _red_for_de(fed)
    body = env.body
    assert isinstance(body, EncryptedBody)
    de = fed.nodes[NodeId("DE")].encryption
    assert crypto.decrypt_body(body, header_digest(env), NodeId("DE"), de)
    changed = _changed(env, field, data)
    with pytest.raises(ConfidentialityError) as info:
        crypto.decrypt_body(body, header_digest(changed), NodeId("DE"), de)
    assert info.value.reason is Reason.BODY_NOT_BOUND


def _encode_v1(env: Envelope) -> bytes:
    """``env`` written with the released v1 Envelope schema (what a v1 node wrote)."""
    v1 = codec.REGISTRY.versions()["1"]["eu.ncp.exchange.Envelope"]
    record = env.to_avro()
    name, body = record["body"]
    record["body"] = (name, {k: v for k, v in body.items() if k != "key_commitment"})
    out = BytesIO()
    schemaless_writer(out, v1.parsed, record)
    return v1.header + out.getvalue()


def test_v1_records_are_read_and_reported_as_v1(fed: Federation) -> None:
    """A record written by a v1 node (v1 schema, v1 encryption) verifies, opens with the v1
    recipe and says version 1; current records say version 2."""
    sealed = fed.seal_alert("FR", recipients=["DE"])
    assert sealed.envelope.version == 2
    assert decode_envelope(encode_envelope(sealed.envelope)).version == 2
    payload = crypto.decrypt_body(
        sealed.envelope.body,  # type: ignore[arg-type]
        header_digest(sealed.envelope),
        NodeId("DE"),
        fed.nodes[NodeId("DE")].encryption,
    )
    old_body = crypto.encrypt_body(
        payload, sealed.envelope.message_id.bytes, [_recipient(fed, "DE")], version=1
    )
    env_v1 = sealed.envelope._replace(body=old_body, version=1)
    data = _encode_v1(env_v1)
    assert data[2:10] == bytes.fromhex("5ff15cb32fdd5bff")
    key = fed.nodes[NodeId("FR")].signing
    value = codec.encode_signed(data, key.sign(data), key.key_id)
    opened = _open_as(fed, value, env_v1, "DE")
    assert opened.verified.envelope.version == 1
    assert opened.payload is not None


def test_v1_vectors_still_decode_as_v1() -> None:
    """The committed v1 Envelope vectors decode, as version 1, with the current code."""
    folder = Path(__file__).parent.parent / "vectors" / "v1"
    for name in ("Envelope.json", "Envelope-encrypted.json"):
        vector = json.loads((folder / name).read_text())
        env = decode_envelope(bytes.fromhex(vector["hex"]))
        assert env.version == 1
        assert str(env.message_id) == str(
            UUID(bytes=bytes.fromhex(vector["record"]["message_id"]["$bytes"]))
        )


def test_seal_writes_wire_v2_with_a_32_byte_commitment(fed: Federation) -> None:
    """An encrypted record is written with the v2 schema and carries a 32-byte commitment."""
    sealed = fed.seal_alert("FR", recipients=["DE"])
    body = sealed.envelope.body
    assert isinstance(body, EncryptedBody)
    assert len(body.key_commitment) == 32
    data = codec.decode_signed(sealed.value)[0]
    assert data[2:10] == codec.REGISTRY.current("Envelope").fingerprint


def test_the_auditor_counts_v1_records_as_v1(fed: Federation) -> None:
    """A replayed batch with one v1 and one v2 record: both verify, counted per wire version."""
    v2 = fed.seal_alert("FR")
    env_v1 = fed.seal_alert("FR").envelope._replace(version=1)
    data = _encode_v1(env_v1)
    key = fed.nodes[NodeId("FR")].signing
    v1_value = codec.encode_signed(data, key.sign(data), key.key_id)
    ms = int(NOW.timestamp() * 1000)
    batch = [
        (v2.envelope.topic, 0, 0, ms, v2.key, v2.value),
        (env_v1.topic, 0, 1, ms, env_v1.key.encode(), v1_value),
    ]
    failed, _, tally = digest_batch(batch, fed.trust, NOW)
    assert failed == []
    assert tally.as_dict()["by_wire_version"] == {"v1": 1, "v2": 1}
