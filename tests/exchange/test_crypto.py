"""Ed25519 signatures, UUIDv7 ids and the hash chain (exchange.crypto, uuid7, chain)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from exchange import crypto
from exchange.chain import ChainState, Link, envelope_hash
from exchange.errors import Reason, VerificationError
from exchange.ids import Topic
from exchange.keys import SigningKey
from exchange.uuid7 import uuid7, uuid7_time_ms
from tests.exchange.test_zip215_vectors import ALL, EDGE_CASES, SMALL_ORDER

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


def test_signature_verifies_over_exact_bytes() -> None:
    """A signature verifies over the signed bytes and over nothing else."""
    key = SigningKey.generate()
    data = os.urandom(1000)
    sig = key.sign(data)
    assert len(sig) == 64
    crypto.verify(key.public_bytes, sig, data)
    for public, signed in (
        (key.public_bytes, data + b"\0"),
        (SigningKey.generate().public_bytes, data),
    ):
        with pytest.raises(VerificationError) as info:
            crypto.verify(public, sig, signed)
        assert info.value.reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("public", "signature"),
    [(b"short", b"s" * 64), (b"p" * 32, b""), (b"p" * 32, b"s" * 63), (b"p" * 32, b"s" * 65)],
)
def test_verify_refuses_malformed_inputs_with_bad_signature(
    public: bytes, signature: bytes
) -> None:
    """Wrong-sized keys or signatures raise BAD_SIGNATURE, never anything else."""
    with pytest.raises(VerificationError) as info:
        crypto.verify(public, signature, b"data")
    assert info.value.reason is Reason.BAD_SIGNATURE


def test_uuid7_layout_carries_the_millisecond() -> None:
    """A UUIDv7 has version 7, the RFC variant and the given time's unix milliseconds."""
    u = uuid7(NOW)
    assert u.version == 7
    assert u.variant == "specified in RFC 4122"
    assert uuid7_time_ms(u) == int(NOW.timestamp() * 1000)


def test_uuid7_is_monotonic_within_one_millisecond() -> None:
    """Ids made in the same millisecond strictly increase; a later ms sorts after."""
    ids = [uuid7(NOW) for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000
    assert uuid7(NOW + timedelta(milliseconds=1)) > ids[-1]


def test_uuid7_refuses_naive_time() -> None:
    """A naive datetime is refused: the id must carry UTC time."""
    with pytest.raises(ValueError, match="timezone-aware"):
        uuid7(datetime(2026, 1, 1))


def test_chain_numbers_from_one_and_links_hashes() -> None:
    """The chain starts at sequence 1 without hash, then carries each previous envelope hash."""
    chain = ChainState()
    t = Topic("ncp.alerts.v1")
    assert chain.next(t) == Link(1, None)
    h1 = envelope_hash(b"first")
    chain.advance(t, h1)
    assert chain.next(t) == Link(2, h1)
    h2 = envelope_hash(b"second")
    chain.advance(t, h2)
    assert chain.next(t).follows(Link(2, h1), h2)
    assert chain.next(Topic("ncp.blacklist.v1")) == Link(1, None)
    restored = ChainState(chain.snapshot())
    assert restored.next(t) == Link(3, h2)


@pytest.mark.parametrize(
    ("sequence", "previous"), [(0, None), (1, b"h" * 32), (2, None), (2, b"h")]
)
def test_link_refuses_impossible_positions(sequence: int, previous: bytes | None) -> None:
    """A link without a hash is sequence 1, and only sequence 1; hashes are 32 bytes."""
    with pytest.raises(ValueError, match=r"sequence|previous_hash"):
        Link(sequence, previous)


def test_verify_and_verify_many_follow_the_zip215_rule_on_every_vector() -> None:
    """crypto.verify and crypto.verify_many give every ZIP-215 vector its verdict."""
    for v in ALL:
        try:
            crypto.verify(v.public_key, v.signature, v.message)
            verdict = True
        except VerificationError:
            verdict = False
        assert verdict is v.valid, v.case
    items = [(v.public_key, v.signature, v.message) for v in ALL]
    assert crypto.verify_many(items) == [v.valid for v in ALL]


def test_verify_many_singles_out_exactly_the_bad_items() -> None:
    """In a batch of good signatures, only the tampered or wrong-sized items are False."""
    key = SigningKey.generate()
    items = []
    for i in range(300):
        data = os.urandom(100 + i)
        items.append((key.public_bytes, key.sign(data), data))
    bad = {7: "flipped", 150: "short", 299: "other key"}
    public, sig, data = items[7]
    items[7] = (public, sig, data[:-1] + bytes([data[-1] ^ 1]))
    items[150] = (items[150][0], items[150][1][:63], items[150][2])
    items[299] = (SigningKey.generate().public_bytes, items[299][1], items[299][2])
    assert crypto.verify_many(items) == [i not in bad for i in range(300)]
    assert crypto.verify_many([]) == []


def test_small_order_keys_are_not_prime_order_points() -> None:
    """is_prime_order_point: honest keys pass; small-order, mixed-order and odd sizes fail."""
    assert crypto.is_prime_order_point(SigningKey.generate().public_bytes)
    assert not any(crypto.is_prime_order_point(v.public_key) for v in SMALL_ORDER)
    mixed = next(v for v in EDGE_CASES if "mixed-order A " in v.case)
    assert not crypto.is_prime_order_point(mixed.public_key)
    assert not crypto.is_prime_order_point(b"\x01" * 31)
