"""Low-level cryptography: Ed25519 signatures and recipient encryption.

Signatures: Ed25519. Signing is libsodium's (PyNaCl; about 1.5x ``cryptography``'s
speed on our 2-core machine). Verifying follows the protocol's one rule, ZIP-215
(``docs/signature-rule.md``, :mod:`exchange.zip215`): :func:`verify` checks one
signature, :func:`verify_many` a batch in one call (ed25519-zebra's batch check, GIL
released), with the same verdicts. A signature is 64 bytes over exactly the bytes given
(no hashing or re-encoding in between). libsodium's own verify is cofactorless and must
not be used: see the rule for why.

Recipient encryption, wire v2 (ncp-exchange/v2), with ``cryptography``::

    H      = header digest: SHA-256 of the Envelope's bytes before the body (exchange.envelope)
    CEK    = 32 random bytes, nonce = 12 random bytes        (one per message)
    ciphertext = AES-256-GCM(CEK).encrypt(nonce, payload, aad=H)
    key_commitment = SHA-256(b"ncp-exchange/v2 key-commitment" || H || CEK)
    eph    = a fresh X25519 key pair                          (one per message)
    for each recipient R with X25519 public key P_R:
        shared  = X25519(eph_priv, P_R)
        KEK     = HKDF-SHA256(shared, length=32, salt=eph_pub || P_R,
                              info=b"ncp-exchange/v2 key-wrap" || H || R.encode())
        wrapped = AES-256-GCM(KEK).encrypt(12 zero bytes, CEK, aad=H)   # KEK used once

The header covers message id, type, topic, key, sender, created_at, sequence, previous
hash, recipients and handling, so a body (or one wrapped key) moved into any other
envelope fails to open: BODY_NOT_BOUND. The commitment, inside the signed envelope,
pins the one content key every recipient must unwrap (KEY_COMMITMENT_MISMATCH
otherwise), so one signed message cannot open to different plaintexts for different
recipients (AES-GCM alone is not key-committing).

Wire v1 (read only, for records written before v2): the same with ``H`` replaced by the
16 raw bytes of the message id, ``b"ncp-exchange/v1 key-wrap"``, and no commitment.
Each wrapped key is 48 bytes (32 + 16-byte tag).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import nacl.bindings
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from exchange import zip215
from exchange.errors import ConfidentialityError, Reason, VerificationError
from exchange.ids import KeyId, NodeId

if TYPE_CHECKING:
    from exchange.keys import EncryptionKey

__all__ = [
    "SIGNATURE_BYTES",
    "EncryptedBody",
    "Entropy",
    "Recipient",
    "WrappedKey",
    "decrypt_body",
    "encrypt_body",
    "is_prime_order_point",
    "sign",
    "verify",
    "verify_many",
]

SIGNATURE_BYTES = 64
WRAP_INFO = b"ncp-exchange/v1 key-wrap"
WRAP_INFO_V2 = b"ncp-exchange/v2 key-wrap"
COMMITMENT_LABEL = b"ncp-exchange/v2 key-commitment"
_ZERO_NONCE = bytes(12)
_crypto_sign = nacl.bindings.crypto_sign
_is_valid_point = nacl.bindings.crypto_core_ed25519_is_valid_point
_zip215_verify = zip215.verify
_zip215_verify_batch = zip215.verify_batch


def sign(secret: bytes, data: bytes) -> bytes:
    """Ed25519 signature of ``data`` with libsodium's 64-byte secret key."""
    signed: bytes = _crypto_sign(data, secret)
    return signed[:SIGNATURE_BYTES]


def verify(public_key: bytes, signature: bytes, data: bytes) -> None:
    """Return only when ``signature`` is a valid Ed25519 signature of ``data`` by ``public_key``.

    Valid means valid under ZIP-215 (``exchange.zip215.verify``, whose arguments come in
    another order). Raises VerificationError(BAD_SIGNATURE) otherwise (also for keys or
    signatures of the wrong size): a failed check cannot be mistaken for a passed one by
    a caller that forgets to look at a result.
    """
    if len(signature) != SIGNATURE_BYTES:
        raise _bad_signature(f"a signature is {SIGNATURE_BYTES} bytes, not {len(signature)}")
    if not _zip215_verify(public_key, data, signature):
        raise _bad_signature("signature does not verify")


def verify_many(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """Whether each ``(public_key, signature, data)`` holds, in order: one batch check.

    The same verdicts as :func:`verify` on each item (ZIP-215: single and batch checks
    follow one rule, so no verdict depends on what else shares the batch); when the batch
    fails, the items are checked one by one. Wrong sizes are False, never an exception.
    Releases the GIL with the native verifier: call it in a worker thread or process.
    """
    return _zip215_verify_batch([(key, data, sig) for key, sig, data in items])


def is_prime_order_point(public_key: bytes) -> bool:
    """Whether ``public_key`` is the canonical encoding of a point of the prime-order
    subgroup: false for small-order (and mixed-order) keys, under which ZIP-215 lets
    anyone sign (R = identity, S = 0 verifies for every message)."""
    if len(public_key) != 32:
        return False
    return bool(_is_valid_point(public_key))


def _bad_signature(detail: str) -> VerificationError:
    return VerificationError(Reason.BAD_SIGNATURE, detail, field="signature")


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """The content key wrapped for one recipient, under its encryption key ``key_id``."""

    recipient: NodeId
    key_id: KeyId
    wrapped_key: bytes


@dataclass(frozen=True, slots=True)
class EncryptedBody:
    """A payload encrypted for named recipients (see the module doc for the recipe)."""

    ephemeral_public_key: bytes
    nonce: bytes
    ciphertext: bytes
    wrapped_keys: tuple[WrappedKey, ...]
    key_commitment: bytes = b""  # wire v2: commitment to the content key; empty in v1


@dataclass(frozen=True, slots=True)
class Entropy:
    """The randomness of one encryption: injected by known-answer tests, else drawn fresh."""

    content_key: bytes  # 32 bytes
    nonce: bytes  # 12 bytes
    ephemeral_private_key: bytes  # 32 bytes, X25519

    @classmethod
    def fresh(cls) -> Entropy:
        """Random values from the operating system."""
        return cls(os.urandom(32), os.urandom(12), os.urandom(32))


@dataclass(frozen=True, slots=True)
class Recipient:
    """A recipient's node id and its X25519 encryption key (from the trust list)."""

    node: NodeId
    key_id: KeyId
    public_key: bytes


def _kek(
    shared: bytes, eph_pub: bytes, recipient_pub: bytes, binding: bytes, node: str, version: int
) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=eph_pub + recipient_pub,
        info=(WRAP_INFO if version == 1 else WRAP_INFO_V2) + binding + node.encode(),
    )
    return hkdf.derive(shared)


def key_commitment(content_key: bytes, header_digest: bytes) -> bytes:
    """The v2 commitment to ``content_key`` for the envelope whose header digest is given."""
    return hashlib.sha256(COMMITMENT_LABEL + header_digest + content_key).digest()


def _binding_size(binding: bytes, version: int) -> None:
    if version == 1 and len(binding) != 16:
        raise ValueError("wire v1 binds to the 16 bytes of the message id")
    if version == 2 and len(binding) != 32:
        raise ValueError("wire v2 binds to the 32-byte header digest")
    if version not in (1, 2):
        raise ValueError(f"no wire version {version}")


def encrypt_body(
    payload: bytes,
    binding: bytes,
    recipients: Sequence[Recipient],
    *,
    version: int = 2,
    entropy: Entropy | None = None,
) -> EncryptedBody:
    """Encrypt ``payload`` once and wrap its content key for each recipient.

    ``binding``: the header digest (v2, 32 bytes) or the message id (v1, 16 bytes).
    ``entropy``: the content key, nonce and ephemeral key (known-answer tests only).
    """
    _binding_size(binding, version)
    e = entropy or Entropy.fresh()
    cek, nonce = e.content_key, e.nonce
    if len(cek) != 32 or len(nonce) != 12:
        raise ValueError("content key must be 32 bytes, nonce 12")
    ciphertext = AESGCM(cek).encrypt(nonce, payload, binding)
    eph = X25519PrivateKey.from_private_bytes(e.ephemeral_private_key)
    eph_pub = eph.public_key().public_bytes_raw()
    wrapped: list[WrappedKey] = []
    for r in recipients:
        shared = eph.exchange(X25519PublicKey.from_public_bytes(r.public_key))
        kek = _kek(shared, eph_pub, r.public_key, binding, r.node, version)
        wrapped.append(WrappedKey(r.node, r.key_id, AESGCM(kek).encrypt(_ZERO_NONCE, cek, binding)))
    commitment = key_commitment(cek, binding) if version == 2 else b""
    return EncryptedBody(eph_pub, nonce, ciphertext, tuple(wrapped), commitment)


def _fail(detail: str) -> ConfidentialityError:
    return ConfidentialityError(Reason.DECRYPTION_FAILED, detail, field="body")


def decrypt_body(
    body: EncryptedBody,
    binding: bytes,
    reader: NodeId,
    key: EncryptionKey,
    *,
    version: int = 2,
) -> bytes:
    """The payload bytes of ``body`` for ``reader``, who holds ``key``.

    ``binding``: the header digest (v2) or the message id (v1), as for :func:`encrypt_body`.
    Raises ConfidentialityError: DECRYPTION_FAILED when there is no wrapped key for
    ``reader`` under ``key``; in v2 BODY_NOT_BOUND when the wrapped key or the
    ciphertext was not made for this envelope's header, KEY_COMMITMENT_MISMATCH when the
    unwrapped key is not the one the envelope commits to. (v1: DECRYPTION_FAILED for all.)
    """
    _binding_size(binding, version)
    mine = [w for w in body.wrapped_keys if w.recipient == reader]
    if not mine:
        raise _fail(f"no wrapped key for {reader}")
    entry = next((w for w in mine if w.key_id == key.key_id), None)
    if entry is None:
        ids = ", ".join(w.key_id for w in mine)
        raise _fail(f"wrapped for key {ids}, not for this node's key {key.key_id}")
    unbound = Reason.DECRYPTION_FAILED if version == 1 else Reason.BODY_NOT_BOUND
    try:
        shared = key.exchange(body.ephemeral_public_key)
        kek = _kek(shared, body.ephemeral_public_key, key.public_bytes, binding, reader, version)
        cek = AESGCM(kek).decrypt(_ZERO_NONCE, entry.wrapped_key, binding)
    except InvalidTag as exc:
        raise ConfidentialityError(
            unbound, "the wrapped key does not open under this envelope's header", field="body"
        ) from exc
    except ValueError as exc:  # bad point, key or nonce size
        raise _fail(str(exc)) from exc
    if version == 2 and not hmac.compare_digest(key_commitment(cek, binding), body.key_commitment):
        raise ConfidentialityError(
            Reason.KEY_COMMITMENT_MISMATCH,
            "the unwrapped content key is not the one the envelope commits to",
            field="body.key_commitment",
        )
    try:
        return AESGCM(cek).decrypt(body.nonce, body.ciphertext, binding)
    except InvalidTag as exc:
        raise ConfidentialityError(
            unbound, "the ciphertext does not open under this envelope's header", field="body"
        ) from exc
    except ValueError as exc:
        raise _fail(str(exc)) from exc
