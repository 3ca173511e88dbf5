"""The ZIP-215 vectors (tests/vectors/zip215): the same verdict alone and in every batch.

Each vector is checked with :func:`exchange.zip215.verify`, in a batch alone, and in a
batch among valid signatures (where the batch check fails for an invalid vector and the
verdicts come from single checks, and passes for a valid one); and with the fallback,
py-ed25519-zebra-bindings, imported directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import nacl.signing
import pytest

from exchange import zip215
from exchange.zip215 import bindings_backend

HERE = Path(__file__).resolve().parent.parent / "vectors" / "zip215"


class Vector(NamedTuple):
    """One vector: the triple and its expected verdict."""

    case: str
    public_key: bytes
    message: bytes
    signature: bytes
    valid: bool

    @property
    def item(self) -> tuple[bytes, bytes, bytes]:
        """The (public_key, message, signature) triple, in verify_batch's order."""
        return self.public_key, self.message, self.signature


def load(name: str) -> list[Vector]:
    """The vectors of ``tests/vectors/zip215/<name>.json``."""
    doc: dict[str, Any] = json.loads((HERE / f"{name}.json").read_text())
    return [
        Vector(
            v["case"],
            bytes.fromhex(v["public_key"]),
            bytes.fromhex(v["message"]),
            bytes.fromhex(v["signature"]),
            v["valid_zip215"],
        )
        for v in doc["vectors"]
    ]


SMALL_ORDER = load("small_order")
EDGE_CASES = load("edge_cases")
ALL = SMALL_ORDER + EDGE_CASES


def _valid_items(n: int) -> list[tuple[bytes, bytes, bytes]]:
    """``n`` valid PyNaCl signatures of 600-byte messages under three keys."""
    keys = [nacl.signing.SigningKey(bytes([i]) * 32) for i in range(3)]
    items = []
    for i in range(n):
        key = keys[i % 3]
        message = i.to_bytes(4, "big") * 150
        items.append((bytes(key.verify_key), message, key.sign(message).signature))
    return items


VALID = _valid_items(24)


def test_vector_files_are_complete() -> None:
    """The upstream set has its 196 small-order vectors, and the edge cases both verdicts."""
    assert len(SMALL_ORDER) == 196
    assert all(v.valid for v in SMALL_ORDER)
    assert {v.valid for v in EDGE_CASES} == {True, False}


@pytest.mark.parametrize("vector", ALL, ids=lambda v: v.case)
def test_verify_gives_the_expected_verdict(vector: Vector) -> None:
    """verify() gives each vector its ZIP-215 verdict."""
    assert zip215.verify(*vector.item) is vector.valid


@pytest.mark.parametrize("vector", ALL, ids=lambda v: v.case)
def test_batch_alone_gives_the_same_verdict(vector: Vector) -> None:
    """A vector in a batch of its own, and twice in one batch, has the same verdict."""
    assert zip215.verify_batch([vector.item]) == [vector.valid]
    assert zip215.verify_batch([vector.item, vector.item]) == [vector.valid] * 2


@pytest.mark.parametrize("vector", ALL, ids=lambda v: v.case)
def test_batch_among_valid_signatures_gives_the_same_verdict(vector: Vector) -> None:
    """Among valid signatures a vector keeps its verdict, and the others stay True."""
    items = [*VALID[:12], vector.item, *VALID[12:]]
    expected = [True] * 12 + [vector.valid] + [True] * 12
    assert zip215.verify_batch(items) == expected


def test_whole_sets_in_one_batch() -> None:
    """All vectors in one batch, with valid signatures, give exactly their verdicts."""
    items = [v.item for v in ALL] + VALID
    assert zip215.verify_batch(items) == [v.valid for v in ALL] + [True] * len(VALID)
    small = [v.item for v in SMALL_ORDER]
    assert zip215.verify_batch(small) == [True] * len(small)


def test_fallback_gives_the_same_verdicts() -> None:
    """py-ed25519-zebra-bindings, imported directly, gives every vector its verdict."""
    fallback = bindings_backend()
    assert [fallback.verify(*v.item) for v in ALL] == [v.valid for v in ALL]
    assert fallback.verify_batch([v.item for v in ALL]) == [v.valid for v in ALL]
