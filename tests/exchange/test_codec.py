"""The Avro single-object codec: fingerprints, encode/decode, resolution, fast paths, vectors."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint

from exchange import codec
from exchange.errors import ExchangeError, Reason, WireError
from tests.vectors import samples

VECTOR_FILES = sorted(samples.VECTORS.glob("*.json"))


def test_crc64_avro_matches_the_spec_vectors() -> None:
    """CRC-64-AVRO gives the values Apache Avro's own tests pin for "int" and "string"."""
    assert codec.crc64_avro(b'"int"') == 0x7275D51A3F395C8F
    assert codec.crc64_avro(b'"string"') == 0x8F014872634503C7
    assert codec.crc64_avro(b"") == 0xC15D213AA4D7A795


def test_single_object_header_of_int_is_the_spec_example() -> None:
    """The header of the schema "int" is C3 01 then the fingerprint little-endian."""
    assert codec.MARKER + codec.fingerprint("int") == bytes.fromhex("c3018f5c393f1ad57572")


def test_fingerprints_agree_with_fastavro() -> None:
    """Every current and released schema's fingerprint equals fastavro's CRC-64-AVRO."""
    schemas = list(codec.REGISTRY.all())
    assert len(schemas) >= 11
    for ps in schemas:
        assert ps.fingerprint.hex() == fastavro_fingerprint(ps.canonical, "CRC-64-AVRO")


def test_registry_finds_schemas_by_short_and_full_name() -> None:
    """current() accepts "Envelope" and "eu.ncp.exchange.Envelope" alike."""
    short = codec.REGISTRY.current("Envelope")
    assert codec.REGISTRY.current("eu.ncp.exchange.Envelope") is short
    assert short.short_name == "Envelope"
    assert codec.REGISTRY.by_fingerprint(short.fingerprint) is short


def test_unknown_schema_name_is_refused() -> None:
    """Asking for a schema that does not exist raises UNKNOWN_SCHEMA naming it."""
    with pytest.raises(WireError, match="NoSuchRecord") as info:
        codec.encode("NoSuchRecord", {})
    assert info.value.reason is Reason.UNKNOWN_SCHEMA


@pytest.mark.parametrize("name", sorted(samples.all_records()))
def test_every_sample_record_round_trips(name: str) -> None:
    """encode then decode gives back the record, under its full record name."""
    schema, record = samples.all_records()[name]
    data = codec.encode(schema, record)
    assert data[:10] == codec.REGISTRY.current(schema).header
    full, decoded = codec.decode(data, expected=schema)
    assert full == f"eu.ncp.exchange.{schema}"
    assert decoded == record


def test_unknown_fingerprint_is_named_in_the_error() -> None:
    """A header with a fingerprint nobody knows raises UNKNOWN_SCHEMA with its hex."""
    with pytest.raises(WireError, match="0102030405060708") as info:
        codec.decode(codec.MARKER + bytes(range(1, 9)) + b"\x00")
    assert info.value.reason is Reason.UNKNOWN_SCHEMA


@pytest.mark.parametrize(
    "data", [b"", b"\xc3", b"\xc3\x01\x00", b"\x00\x01" + bytes(8), b"hello world, not avro"]
)
def test_bytes_without_a_header_are_malformed(data: bytes) -> None:
    """Short bytes or a missing C3 01 marker raise MALFORMED."""
    for decode in (codec.decode, codec.decode_signed):
        with pytest.raises(WireError) as info:
            decode(data)
        assert info.value.reason is Reason.MALFORMED


def test_truncated_record_is_malformed() -> None:
    """Every proper prefix of a valid encoding after the header is refused as MALFORMED."""
    data = codec.encode("Envelope", samples.envelope_record())
    for end in range(10, len(data), 7):
        with pytest.raises(WireError) as info:
            codec.decode(data[:end])
        assert info.value.reason is Reason.MALFORMED


def test_trailing_bytes_are_refused() -> None:
    """A valid record followed by extra bytes is MALFORMED, by decode and decode_signed."""
    data = codec.encode_signed(b"env", b"sig", "kid") + b"\x00"
    for decode in (codec.decode, codec.decode_signed):
        with pytest.raises(WireError, match="trailing") as info:
            decode(data)
        assert info.value.reason is Reason.MALFORMED


def test_expected_record_name_is_enforced() -> None:
    """decode(expected="Envelope") refuses a TrustList."""
    data = codec.encode("TrustList", samples.trust_list_record())
    with pytest.raises(WireError, match="expected a Envelope record, found TrustList"):
        codec.decode(data, expected="Envelope")


def test_encoding_a_record_that_does_not_fit_is_invalid_payload() -> None:
    """A record missing a required field raises INVALID_PAYLOAD naming the schema."""
    with pytest.raises(WireError, match="SignedEnvelope") as info:
        codec.encode("SignedEnvelope", {"envelope": b"", "signature": b""})
    assert info.value.reason is Reason.INVALID_PAYLOAD


def test_fast_signed_path_equals_the_generic_codec() -> None:
    """encode_signed/decode_signed produce and read exactly what encode/decode do."""
    envelope = codec.encode("Envelope", samples.envelope_record())
    signature, key_id = bytes(range(64)), "0123456789abcdef"
    data = codec.encode_signed(envelope, signature, key_id)
    generic = codec.encode(
        "SignedEnvelope", {"envelope": envelope, "signature": signature, "key_id": key_id}
    )
    assert data == generic
    assert codec.decode_signed(data) == (envelope, signature, key_id)
    assert codec.decode(data)[1] == {"envelope": envelope, "signature": signature, "key_id": key_id}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\x01", "length -1"),  # zig-zag 1 = -1
        (b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", "longer than 10 bytes"),
        (b"\x06ab", "exceeds"),
        (b"\x00\x00\x02\xff", "UTF-8"),
        (b"\x00\x00", "truncated"),
        (b"\x00\x00\x80", "truncated"),
    ],
)
def test_decode_signed_refuses_what_avro_refuses(body: bytes, why: str) -> None:
    """Negative or overlong lengths, overlong varints, bad UTF-8 and truncation are MALFORMED."""
    header = codec.REGISTRY.current("SignedEnvelope").header
    with pytest.raises(WireError, match=why) as info:
        codec.decode_signed(header + body)
    assert info.value.reason is Reason.MALFORMED


def test_decode_signed_of_another_record_is_refused() -> None:
    """An Envelope where a SignedEnvelope is expected is MALFORMED, not silently misread."""
    with pytest.raises(WireError, match="found Envelope"):
        codec.decode_signed(codec.encode("Envelope", samples.envelope_record()))


def test_may_name_key_is_false_only_where_no_key_can_be_named() -> None:
    """The consumer's cheap pre-check for its own key ids never hides a record that names
    one: not with the key id's length padded (Avro varints may be), not in another schema;
    it is False for a record of another key."""
    envelope = codec.encode("Envelope", samples.envelope_record())
    data = codec.encode_signed(envelope, bytes(64), "own-key")
    assert codec.may_name_key(data, frozenset({"own-key", "x"}))
    assert not codec.may_name_key(data, frozenset({"other-key"}))
    assert not codec.may_name_key(data, frozenset())
    # length 7: zig-zag 14, one byte 0x0E; padded to two bytes 0x8E 0x00
    padded = data[: -len("own-key") - 1] + b"\x8e\x00own-key"
    assert codec.decode_signed(padded)[2] == "own-key"
    assert codec.may_name_key(padded, frozenset({"own-key"}))
    assert codec.may_name_key(envelope, frozenset({"other-key"}))  # not this schema: decode


def test_large_lengths_use_multi_byte_varints() -> None:
    """A 1 MB envelope round-trips through the fast path (3-byte length varint)."""
    big = bytes(1 << 20)
    data = codec.encode_signed(big, b"s" * 64, "k")
    assert codec.decode_signed(data)[0] == big
    ps = codec.REGISTRY.current("SignedEnvelope")
    record: Any = fastavro.schemaless_reader(io.BytesIO(data[10:]), ps.parsed, None)
    assert record["envelope"] == big


@pytest.mark.parametrize("path", VECTOR_FILES, ids=lambda p: p.stem)
def test_golden_vectors_are_stable(path: Path) -> None:
    """Each committed vector encodes to its committed bytes and decodes to its record."""
    vector = json.loads(path.read_text(encoding="utf-8"))
    schema = codec.REGISTRY.current(vector["schema"])
    assert schema.fingerprint.hex() == vector["fingerprint"]
    record = samples.from_json(vector["record"])
    data = bytes.fromhex(vector["hex"])
    assert codec.encode(vector["schema"], record) == data
    assert codec.decode(data) == (schema.name, record)


def test_every_sample_has_a_golden_vector() -> None:
    """The committed vectors cover every sample record (regenerate with the samples module)."""
    assert {p.stem for p in VECTOR_FILES} == set(samples.all_records())


def test_schema_files_must_be_named_after_their_type(tmp_path: Path) -> None:
    """A schema folder whose file name and type name differ is refused as BAD_CONFIG."""
    (tmp_path / "Wrong.avsc").write_text(
        json.dumps({"type": "fixed", "name": "Right", "size": 1, "doc": "d"})
    )
    with pytest.raises(ExchangeError, match="name the file after the type") as info:
        codec.SchemaRegistry(tmp_path).names()
    assert info.value.reason is Reason.BAD_CONFIG


def test_unknown_type_reference_is_refused(tmp_path: Path) -> None:
    """A schema that references a type defined nowhere is refused, naming the type."""
    (tmp_path / "R.avsc").write_text(
        json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "Nope"}]})
    )
    with pytest.raises(ExchangeError, match="Nope"):
        codec.SchemaRegistry(tmp_path).names()
