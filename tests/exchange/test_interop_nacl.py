"""Interoperability: our Ed25519 signatures and key files work with other libraries.

We sign and verify with libsodium (PyNaCl); ``cryptography`` (OpenSSL) must accept
our signatures and produce signatures we accept, and a record value's signature
must verify with either library over the exact envelope bytes.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import nacl.signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from exchange import codec, crypto
from exchange.errors import VerificationError
from exchange.keys import SigningKey
from tests.helpers.federation import make_federation

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


def test_our_signatures_verify_with_cryptography() -> None:
    """A signature made by SigningKey verifies with cryptography's Ed25519."""
    key = SigningKey.generate()
    for size in (0, 1, 1000, 100_000):
        data = os.urandom(size)
        Ed25519PublicKey.from_public_bytes(key.public_bytes).verify(key.sign(data), data)


def test_cryptography_signatures_verify_with_ours() -> None:
    """A signature made by cryptography's Ed25519 verifies with exchange.crypto.verify."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw()
    data = os.urandom(1000)
    crypto.verify(public, private.sign(data), data)
    with pytest.raises(VerificationError):
        crypto.verify(public, private.sign(data), data[:-1])


def test_pynacl_high_level_api_agrees(tmp_path: Path) -> None:
    """PyNaCl's SigningKey from our key file's seed gives our public key and our signatures."""
    key = SigningKey.generate()
    key.save(tmp_path / "k.key")
    private = serialization.load_pem_private_key((tmp_path / "k.key").read_bytes(), None)
    assert isinstance(private, Ed25519PrivateKey)
    theirs = nacl.signing.SigningKey(private.private_bytes_raw())
    assert bytes(theirs.verify_key) == key.public_bytes
    assert theirs.sign(b"msg").signature == key.sign(b"msg")


def test_sealed_record_signature_verifies_with_both_libraries(tmp_path: Path) -> None:
    """The signature in a sealed record covers exactly the envelope bytes, for both libraries."""
    fed = make_federation(tmp_path, now=NOW)
    sealed = fed.seal_alert("FR")
    envelope, signature, key_id = codec.decode_signed(sealed.value)
    public = fed.nodes["FR"].signing.public_bytes
    assert key_id == fed.nodes["FR"].signing.key_id
    Ed25519PublicKey.from_public_bytes(public).verify(signature, envelope)
    nacl.signing.VerifyKey(public).verify(envelope, signature)
    crypto.verify(public, signature, envelope)
