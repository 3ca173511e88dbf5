"""Arbitrary and mutated bytes never crash the decoders: only WireError comes out.

The hand-written SignedEnvelope reader is also checked against fastavro on the same
bytes: whatever one accepts, the other accepts with the same result.
"""

from __future__ import annotations

import contextlib
import io
import re
from typing import Any

import fastavro
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from exchange import codec
from exchange.errors import WireError
from exchange.models import decode_payload
from tests.vectors import samples

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = [codec.encode(schema, record) for schema, record in samples.all_records().values()]
HEADERS = [ps.header for ps in codec.REGISTRY.all()]
SIGNED = codec.REGISTRY.current("SignedEnvelope")
NOW = samples.NOW


def only_wire_errors(data: bytes) -> None:
    """Each decoder either returns or raises WireError."""
    for decode in (
        codec.decode,
        codec.decode_signed,
        lambda d: decode_payload(d, now=NOW),
    ):
        with contextlib.suppress(WireError):
            decode(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid encoding with bytes flipped, cut, inserted or a length varint rewritten."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "varint"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "varint" and pos < len(data):
            data[pos : pos + 1] = draw(st.sampled_from([b"\x01", b"\xff\xff\xff\xff\x0f", b"\x7f"]))
    return bytes(data)


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_wire_error(data: bytes) -> None:
    """Random bytes are refused with WireError (or, rarely, decode), never anything else."""
    only_wire_errors(data)


@FUZZ
@given(st.sampled_from(HEADERS), st.binary(max_size=512))
def test_valid_header_then_garbage_raises_only_wire_error(header: bytes, body: bytes) -> None:
    """A known fingerprint followed by random bytes reaches the Avro reader and fails cleanly."""
    only_wire_errors(header + body)


@FUZZ
@given(mutated())
def test_mutated_valid_encodings_raise_only_wire_error(data: bytes) -> None:
    """Valid records with flipped, cut or inserted bytes never escape as another exception."""
    only_wire_errors(data)


def fastavro_signed(body: bytes) -> tuple[bytes, bytes, str] | None:
    """fastavro's reading of a SignedEnvelope body, refusing trailing bytes as we do."""
    fo = io.BytesIO(body)
    try:
        record: Any = fastavro.schemaless_reader(fo, SIGNED.parsed, None)
    except Exception:
        return None
    if fo.tell() != len(body):
        return None
    return record["envelope"], record["signature"], record["key_id"]


def ours_signed(data: bytes) -> tuple[bytes, bytes, str] | None:
    try:
        return codec.decode_signed(data)
    except WireError:
        return None


@st.composite
def signed_bodies(draw: st.DrawFn) -> bytes:
    """SignedEnvelope bodies: real lengths and contents, then possibly damaged.

    Half the signatures are 64 bytes, the shape decode_signed reads inline.
    """
    parts = [
        draw(st.binary(max_size=300)),
        draw(st.one_of(st.binary(min_size=64, max_size=64), st.binary(max_size=80))),
        draw(st.text(max_size=20)).encode("utf-8", "surrogatepass"),
    ]
    body = bytearray(b"".join(codec.encode_long(len(p)) + p for p in parts))
    if draw(st.booleans()):
        if body:
            body[draw(st.integers(0, len(body) - 1))] = draw(st.integers(0, 255))
        del body[draw(st.integers(0, len(body))) :]
    return bytes(body) + draw(st.binary(max_size=2))


@settings(max_examples=500, deadline=None)
@given(st.one_of(signed_bodies(), st.binary(max_size=64)))
def test_hand_written_signed_reader_agrees_with_fastavro(body: bytes) -> None:
    """decode_signed accepts exactly what fastavro accepts (fully consumed), with equal values.

    Varints over 10 bytes are left out: Avro (Java) refuses them and so do we, while
    fastavro reads them leniently.
    """
    assume(not re.search(rb"[\x80-\xff]{10}", body))
    assert ours_signed(SIGNED.header + body) == fastavro_signed(body)
