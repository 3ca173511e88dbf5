"""Key pairs, key files and key ids.

* Signing keys are Ed25519; signing goes through libsodium (PyNaCl), which signs
  about 1.5x faster than ``cryptography`` here (see ``tests/bench/bench_wire.py``).
* Encryption keys are X25519 (``cryptography``), used by :mod:`exchange.crypto`.
* Files are PEM, readable by openssl: PKCS#8 for private keys (written with mode
  0600), SubjectPublicKeyInfo for public keys.
* A key id is 16 lower-case hex digits: the first 8 bytes of SHA-256 of the raw
  32-byte public key.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Self

import nacl.bindings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from exchange import crypto
from exchange.errors import InputError, Reason
from exchange.ids import KeyId

__all__ = [
    "EncryptionKey",
    "SigningKey",
    "key_id_for",
    "load_public_key",
    "write_private_pem",
    "write_public_pem",
]

KEY_BYTES = 32


def key_id_for(public_bytes: bytes) -> KeyId:
    """The key id of a raw 32-byte public key."""
    return KeyId(hashlib.sha256(public_bytes).digest()[:8].hex())


def _bad_file(path: Path, reason: str) -> InputError:
    return InputError([(str(path), reason)], reason=Reason.BAD_CONFIG)


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _bad_file(path, f"cannot read key file: {exc.strerror or exc}") from exc


def write_private_pem(path: Path, pem: bytes) -> None:
    """Write a private key file readable by its owner only (mode 0600, even if it existed)."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, pem)
    finally:
        os.close(fd)


def write_public_pem(path: Path, pem: bytes) -> None:
    """Write a public key file (mode 0644)."""
    Path(path).write_bytes(pem)


def _public_pem(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _private_pem(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_private(path: Path) -> object:
    data = _read(path)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise _bad_file(path, "not an unencrypted PEM (PKCS#8) private key") from exc
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm and others
        raise _bad_file(path, f"unreadable private key: {type(exc).__name__}") from exc


def load_public_key(path: Path) -> bytes:
    """The raw 32 bytes of an Ed25519 or X25519 public key PEM file."""
    data = _read(path)
    try:
        key = serialization.load_pem_public_key(data)
    except Exception as exc:  # ValueError, UnsupportedAlgorithm, ...
        raise _bad_file(path, "not a PEM (SubjectPublicKeyInfo) public key") from exc
    if not isinstance(key, Ed25519PublicKey | X25519PublicKey):
        raise _bad_file(path, f"expected an Ed25519 or X25519 public key, got {type(key).__name__}")
    return key.public_bytes_raw()


class SigningKey:
    """An Ed25519 private key; signs through libsodium."""

    __slots__ = ("_secret", "_seed", "key_id", "public_bytes")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != KEY_BYTES:
            raise ValueError("an Ed25519 seed is 32 bytes")
        public, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        self._seed = bytes(seed)
        self._secret: bytes = secret  # libsodium's 64-byte form: seed + public key
        self.public_bytes: bytes = public
        self.key_id: KeyId = key_id_for(public)

    @classmethod
    def generate(cls) -> Self:
        """A new random key."""
        return cls(os.urandom(KEY_BYTES))

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a PKCS#8 PEM private key file."""
        key = _load_private(path)
        if not isinstance(key, Ed25519PrivateKey):
            raise _bad_file(path, f"expected an Ed25519 private key, got {type(key).__name__}")
        return cls(key.private_bytes_raw())

    def save(self, path: Path, public_path: Path | None = None) -> None:
        """Write the private key (0600) and, when asked, the public key beside it."""
        private = Ed25519PrivateKey.from_private_bytes(self._seed)
        write_private_pem(path, _private_pem(private))
        if public_path is not None:
            write_public_pem(public_path, _public_pem(private.public_key()))

    def public_pem(self) -> bytes:
        """The public key as a SubjectPublicKeyInfo PEM."""
        return _public_pem(Ed25519PublicKey.from_public_bytes(self.public_bytes))

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return crypto.sign(self._secret, data)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


class EncryptionKey:
    """An X25519 private key: the recipient side of :mod:`exchange.crypto` encryption."""

    __slots__ = ("_private", "key_id", "public_bytes")

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private
        self.public_bytes: bytes = private.public_key().public_bytes_raw()
        self.key_id: KeyId = key_id_for(self.public_bytes)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        """From the raw 32-byte private key."""
        return cls(X25519PrivateKey.from_private_bytes(raw))

    @classmethod
    def generate(cls) -> Self:
        """A new random key."""
        return cls(X25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a PKCS#8 PEM private key file."""
        key = _load_private(path)
        if not isinstance(key, X25519PrivateKey):
            raise _bad_file(path, f"expected an X25519 private key, got {type(key).__name__}")
        return cls(key)

    def save(self, path: Path, public_path: Path | None = None) -> None:
        """Write the private key (0600) and, when asked, the public key beside it."""
        write_private_pem(path, _private_pem(self._private))
        if public_path is not None:
            write_public_pem(public_path, self.public_pem())

    def public_pem(self) -> bytes:
        """The public key as a SubjectPublicKeyInfo PEM."""
        return _public_pem(self._private.public_key())

    def private_bytes(self) -> bytes:
        """The raw 32-byte private key (:meth:`from_bytes` takes it back), e.g. to hand the
        key to a worker process. Secret: never log or persist it."""
        return self._private.private_bytes_raw()

    def exchange(self, peer_public: bytes) -> bytes:
        """The X25519 shared secret with ``peer_public`` (raises ValueError on a bad point)."""
        return self._private.exchange(X25519PublicKey.from_public_bytes(peer_public))

    def __repr__(self) -> str:
        return f"EncryptionKey(key_id={self.key_id!r})"
