"""Envelope encoding and decoding (exchange.envelope)."""

from __future__ import annotations

import io
import json
import os
import pickle
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, SafeUUID

import avro.io
import avro.schema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange import codec
from exchange.crypto import EncryptedBody
from exchange.envelope import (
    Envelope,
    WrappedKey,
    _generic_decode,
    _generic_encode,
    decode_envelope,
    encode_envelope,
    handling_from_avro,
)
from exchange.envelope.binary import header as fast_header
from exchange.errors import ExchangeError, Reason, WireError
from exchange.ids import NodeId
from exchange.models import Tlp
from exchange.topics import MessageType
from tests.helpers.federation import Federation, make_federation


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return make_federation(tmp_path)


def test_plain_envelope_round_trips(fed: Federation) -> None:
    """An envelope encodes to bytes that decode to an equal envelope, and re-encode identically."""
    env = fed.seal_alert("FR").envelope
    data = encode_envelope(env)
    assert data[:10] == codec.REGISTRY.current("Envelope").header
    assert decode_envelope(data) == env
    assert encode_envelope(decode_envelope(data)) == data
    assert not env.encrypted


def test_encrypted_envelope_round_trips(fed: Federation) -> None:
    """An envelope with an encrypted body keeps every wrapped key."""
    env = fed.seal_alert("FR", recipients=["DE", "NL"]).envelope
    again = decode_envelope(encode_envelope(env))
    assert again == env
    assert isinstance(again.body, EncryptedBody)
    assert [w.recipient for w in again.body.wrapped_keys] == ["DE", "NL"]


def test_envelope_bytes_read_with_apache_avro(fed: Federation) -> None:
    """Apache's Avro implementation reads our envelope bytes to the same values."""
    env = fed.seal_alert("FR").envelope
    data = encode_envelope(env)
    schema = avro.schema.parse(json.dumps(codec.REGISTRY.current("Envelope").schema))
    record = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert isinstance(record, dict)
    assert record["message_id"] == env.message_id.bytes
    assert record["sender"] == "FR"
    assert record["key"] == env.key
    assert record["body"]["payload"] == env.body
    assert record["handling"]["tlp"] == env.handling.tlp.value


def test_other_records_are_not_envelopes(fed: Federation) -> None:
    """Decoding a TrustList (or garbage) as an Envelope raises WireError."""
    with pytest.raises(WireError) as info:
        decode_envelope(fed.trust.encode())
    assert info.value.reason is Reason.MALFORMED
    with pytest.raises(WireError):
        decode_envelope(os.urandom(100))


def test_handling_records_are_shared_after_validation() -> None:
    """Decoding the same handling twice gives one shared (immutable) Handling."""
    h = {
        "tlp": "AMBER",
        "code": "H1",
        "restriction": None,
        "source_reliability": "B",
        "information_reliability": "TWO",
    }
    assert handling_from_avro(h) is handling_from_avro(dict(h))
    assert handling_from_avro(h).tlp.value == "AMBER"


# --- the hand-written codec agrees with fastavro ---------------------------------------------

_text = st.text(max_size=40)
_handling = st.builds(
    lambda tlp, code, text, src, info: handling_from_avro(
        {
            "tlp": tlp,
            "code": code,
            "restriction": ((text.strip() and text) or "x") if code == "H3" else None,
            "source_reliability": src,
            "information_reliability": info,
        }
    ),
    st.sampled_from([t.value for t in Tlp]),
    st.sampled_from(["H0", "H1", "H2", "H3"]),
    _text,
    st.sampled_from(["A", "B", "C", "X"]),
    st.sampled_from(["ONE", "TWO", "THREE", "FOUR"]),
)
_wrapped = st.builds(WrappedKey, _text, _text, st.binary(max_size=60))
_body = st.one_of(
    st.binary(max_size=300),
    st.builds(
        EncryptedBody,
        st.binary(max_size=40),
        st.binary(max_size=20),
        st.binary(max_size=300),
        st.lists(_wrapped, max_size=70).map(tuple),
        st.binary(max_size=40),
    ),
)
_envelopes = st.builds(
    Envelope,
    st.uuids(),
    st.sampled_from(list(MessageType)),
    _text,
    _text,
    _text,
    st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.one_of(st.none(), st.binary(min_size=32, max_size=32)),
    st.lists(_text, max_size=70).map(tuple),
    _handling,
    _body,
    st.just(2),
)


def test_fast_codec_is_active_for_the_current_schema() -> None:
    """The current Envelope schema is the one the hand-written codec was written for."""
    assert fast_header() == codec.REGISTRY.current("Envelope").header


@settings(max_examples=300, deadline=None)
@given(env=_envelopes)
def test_fast_codec_matches_fastavro_byte_for_byte(env: Envelope) -> None:
    """Hand-written encode gives fastavro's bytes, and both decoders give the same envelope."""
    data = encode_envelope(env)
    assert data == _generic_encode(env)
    assert decode_envelope(data) == env
    assert _generic_decode(data) == env


@settings(max_examples=300, deadline=None)
@given(env=_envelopes, where=st.integers(min_value=10), junk=st.binary(min_size=1, max_size=8))
def test_fast_decoder_accepts_nothing_fastavro_refuses(
    env: Envelope, where: int, junk: bytes
) -> None:
    """On corrupted bytes, whatever the fast decoder accepts fastavro decodes to the same envelope.

    The fast decoder may be stricter: fastavro reads a negative enum index as a Python
    index from the end (-1 -> the last symbol) and wraps an array count of -2**63.
    """
    data = encode_envelope(env)
    where = 10 + where % (len(data) - 9)
    bad = data[:where] + junk + data[where + len(junk) :]
    fast: Envelope | Reason
    try:
        fast = decode_envelope(bad)
    except ExchangeError as exc:
        fast = exc.reason
    if isinstance(fast, Envelope):
        assert _generic_decode(bad) == fast
    else:
        assert fast in (Reason.MALFORMED, Reason.HANDLING_INCONSISTENT)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_fast_decoder_raises_only_exchange_errors(data: bytes) -> None:
    """Arbitrary bytes after an Envelope header decode as fastavro would, or raise ExchangeError."""
    header = codec.REGISTRY.current("Envelope").header
    try:
        env = decode_envelope(header + data)
    except ExchangeError:
        return
    assert _generic_decode(header + data) == env


def test_array_block_count_without_positive_counterpart_is_malformed(fed: Federation) -> None:
    """A recipients block count of -2**63 is refused (fastavro's C long wraps it to empty)."""
    env = fed.seal_alert("FR").envelope._replace(recipients=(NodeId("ZZ"),))
    data = encode_envelope(env)
    one_block = b"\x02\x04ZZ\x00"  # count 1, "ZZ", end of array
    sized_block = b"\x01\x08\x04ZZ\x00"  # count -1 with byte size 4: the same array
    huge_block = b"\xff" * 9 + b"\x01\x08\x04ZZ\x00"  # count -2**63 with byte size 4
    assert data.count(one_block) == 1
    assert decode_envelope(data.replace(one_block, sized_block)) == env
    with pytest.raises(WireError) as info:
        decode_envelope(data.replace(one_block, huge_block))
    assert "block count" in info.value.detail


def _after_varint(data: bytes, at: int) -> int:
    """Where the varint at ``at`` ends."""
    while data[at] & 0x80:
        at += 1
    return at + 1


def _stretched(data: bytes, at: int) -> bytes:
    """``data`` with the one-byte varint at ``at`` written in two bytes (same value)."""
    assert data[at] < 0x80
    return data[:at] + bytes([data[at] | 0x80, 0]) + data[at + 1 :]


@pytest.mark.parametrize(
    "field",
    ["message_type", "topic length", "sender length", "previous_hash branch", "recipients", "tlp"],
)
def test_inline_reads_fall_back_on_longer_varints(fed: Federation, field: str) -> None:
    """A value written in more varint bytes than needed decodes as fastavro reads it.

    The decoder reads one-byte varints inline and everything else with its general
    reader; Avro allows the longer forms, so they must decode to the same envelope.
    """
    env = fed.seal_alert("FR", recipients=["DE"]).envelope
    data = encode_envelope(env)
    topic_at = 27
    key_at = topic_at + 1 + len(env.topic)
    sender_at = key_at + 1 + len(env.key)
    created_at = sender_at + 1 + len(env.sender)
    sequence_at = _after_varint(data, created_at)
    branch_at = _after_varint(data, sequence_at)
    tlp_at = branch_at + 1 + 1 + 1 + len("DE") + 1  # branch null, [1, "DE", end]
    tlps = ["CLEAR", "GREEN", "AMBER", "AMBER_STRICT", "RED"]
    where, value = {  # the byte, and the zig-zag varint it must hold
        "message_type": (26, 0),  # OffenceAlert
        "topic length": (topic_at, 2 * len(env.topic)),
        "sender length": (sender_at, 2 * len(env.sender)),
        "previous_hash branch": (branch_at, 0),  # null: sequence 1
        "recipients": (branch_at + 1, 2),  # one item
        "tlp": (tlp_at, 2 * tlps.index(env.handling.tlp.value)),
    }[field]
    assert data[where] == value
    stretched = _stretched(data, where)
    assert decode_envelope(stretched) == _generic_decode(stretched) == env


def test_decoded_message_ids_are_ordinary_uuids(fed: Federation) -> None:
    """The decoder's message id (made without UUID.__init__) equals, hashes and pickles as one."""
    env = fed.seal_alert("FR").envelope
    decoded = decode_envelope(encode_envelope(env)).message_id
    fresh = UUID(bytes=env.message_id.bytes)
    assert decoded == fresh
    assert hash(decoded) == hash(fresh)
    assert str(decoded) == str(fresh)
    assert decoded.version == fresh.version
    assert decoded.is_safe is SafeUUID.unknown
    assert pickle.loads(pickle.dumps(decoded)) == fresh  # noqa: S301 (our own bytes)
