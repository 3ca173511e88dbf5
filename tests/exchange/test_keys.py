"""Key pairs, PEM key files and key ids (exchange.keys)."""

from __future__ import annotations

import hashlib
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchange.errors import InputError, Reason
from exchange.keys import EncryptionKey, SigningKey, key_id_for, load_public_key


def test_key_id_is_first_8_bytes_of_sha256_in_hex() -> None:
    """A key id is the 16 lower-case hex digits of the first 8 bytes of SHA-256(public key)."""
    pub = bytes(range(32))
    assert key_id_for(pub) == hashlib.sha256(pub).hexdigest()[:16]
    assert len(key_id_for(pub)) == 16


def test_signing_key_round_trips_through_pem_files(tmp_path: Path) -> None:
    """A saved signing key loads back with the same key id and signs identically."""
    key = SigningKey.generate()
    key.save(tmp_path / "s.key", tmp_path / "s.pub")
    again = SigningKey.load(tmp_path / "s.key")
    assert again.key_id == key.key_id
    assert again.sign(b"x") == key.sign(b"x")  # Ed25519 is deterministic
    assert load_public_key(tmp_path / "s.pub") == key.public_bytes


def test_encryption_key_round_trips_through_pem_files(tmp_path: Path) -> None:
    """A saved encryption key loads back with the same public key."""
    key = EncryptionKey.generate()
    key.save(tmp_path / "e.key", tmp_path / "e.pub")
    assert EncryptionKey.load(tmp_path / "e.key").public_bytes == key.public_bytes
    assert load_public_key(tmp_path / "e.pub") == key.public_bytes


def test_private_key_files_are_owner_only(tmp_path: Path) -> None:
    """Private key files are written with mode 0600, even over a laxer existing file."""
    (tmp_path / "s.key").write_text("old")
    (tmp_path / "s.key").chmod(0o644)
    SigningKey.generate().save(tmp_path / "s.key")
    EncryptionKey.generate().save(tmp_path / "e.key")
    for name in ("s.key", "e.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_files_are_standard_pem_readable_by_openssl(tmp_path: Path) -> None:
    """openssl reads the private key file as an ED25519 PKCS#8 key."""
    key = SigningKey.generate()
    key.save(tmp_path / "s.key", tmp_path / "s.pub")
    out = subprocess.run(
        ["openssl", "pkey", "-in", str(tmp_path / "s.key"), "-pubout"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    assert out.encode() == (tmp_path / "s.pub").read_bytes()
    pub = serialization.load_pem_public_key((tmp_path / "s.pub").read_bytes())
    assert isinstance(pub, Ed25519PublicKey)


def test_loading_the_wrong_kind_of_key_names_the_file(tmp_path: Path) -> None:
    """An X25519 file loaded as a signing key is refused with the file name and reason."""
    EncryptionKey.generate().save(tmp_path / "e.key")
    with pytest.raises(InputError) as info:
        SigningKey.load(tmp_path / "e.key")
    assert info.value.reason is Reason.BAD_CONFIG
    assert info.value.field == str(tmp_path / "e.key")
    assert "Ed25519" in str(info.value)


@pytest.mark.parametrize("content", [b"", b"not a pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"])
def test_garbage_key_files_are_refused(tmp_path: Path, content: bytes) -> None:
    """Unreadable key files raise InputError, never a cryptography exception."""
    (tmp_path / "k").write_bytes(content)
    with pytest.raises(InputError):
        SigningKey.load(tmp_path / "k")
    with pytest.raises(InputError):
        EncryptionKey.load(tmp_path / "k")
    with pytest.raises(InputError):
        load_public_key(tmp_path / "k")


def test_missing_key_file_is_refused(tmp_path: Path) -> None:
    """A missing key file raises InputError naming it."""
    with pytest.raises(InputError, match="cannot read"):
        SigningKey.load(tmp_path / "absent.key")
