"""The federation pseudonym key: blinding handles, wrapping the key for each member.

Blinding (what a ``PseudonymQuery`` carries instead of the handle)::

    blind = HMAC-SHA256(K, b"ncp-exchange/pseudonym v1" || 0x00 || platform || 0x00 || handle)

with ``platform`` and ``handle`` normalized (exchange.pseudonyms.normalize), UTF-8. ``K``
is 32 random bytes, the federation pseudonym key, named by ``key_id`` = the first 8 bytes
of SHA-256(b"ncp-exchange/pseudonym key-id" || K), hex.

The limit, plainly: every member holds ``K``, so a member can test guesses (blind a list
of likely handles and compare). The blinding hides the handle from whoever reads the bus
without the key, not from the federation's members.

Distribution: the key travels in the trust list, wrapped for each member's encryption key
with the same recipe as a restricted body (exchange.crypto: X25519 + HKDF + AES-256-GCM,
one wrapped content key per member), bound to the digest
SHA-256(b"ncp-exchange/pseudonym key-wrap" || key_id). Rotation adds a new key and gives
the previous one a ``grace_until``: until then a responder still answers queries blinded
under it. Pure: no I/O; ``now`` is an argument.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from exchange import crypto
from exchange.crypto import EncryptedBody, Recipient
from exchange.errors import ConfidentialityError, Reason
from exchange.ids import NodeId

if TYPE_CHECKING:
    from exchange.keys import EncryptionKey

__all__ = [
    "Keyring",
    "PseudonymKey",
    "WrappedPseudonymKey",
    "blind",
    "keyring_for",
    "new_key",
    "pseudonym_key_id",
    "unwrap",
    "wrap",
]

BLIND_LABEL = b"ncp-exchange/pseudonym v1"
KEY_ID_LABEL = b"ncp-exchange/pseudonym key-id"
WRAP_LABEL = b"ncp-exchange/pseudonym key-wrap"
BLIND_BYTES = 32


def pseudonym_key_id(secret: bytes) -> str:
    """The public name of a pseudonym key (16 hex digits)."""
    return hashlib.sha256(KEY_ID_LABEL + secret).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class PseudonymKey:
    """A pseudonym key in clear (held in memory by a node, never written to the bus)."""

    key_id: str
    secret: bytes
    created_at: datetime
    grace_until: datetime | None = None  # None: the current key

    def __repr__(self) -> str:  # never print the secret
        return f"PseudonymKey({self.key_id}, grace_until={self.grace_until})"


def new_key(created_at: datetime, secret: bytes | None = None) -> PseudonymKey:
    value = secret if secret is not None else os.urandom(32)
    if len(value) != 32:
        raise ValueError("a pseudonym key is 32 bytes")
    return PseudonymKey(pseudonym_key_id(value), value, created_at)


def blind(secret: bytes, platform: str, handle: str) -> bytes:
    """The keyed hash of a normalized (platform, handle)."""
    message = BLIND_LABEL + b"\x00" + platform.encode() + b"\x00" + handle.encode()
    return hmac.new(secret, message, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Keyring:
    """The pseudonym keys a node holds: the current one and those still in their grace."""

    keys: tuple[PseudonymKey, ...]

    @property
    def current(self) -> PseudonymKey | None:
        live = [k for k in self.keys if k.grace_until is None]
        return max(live, key=lambda k: k.created_at) if live else None

    def accepted(self, key_id: str, now: datetime) -> PseudonymKey | None:
        """The key named ``key_id`` if queries blinded under it are answered at ``now``."""
        for k in self.keys:
            if k.key_id == key_id and (k.grace_until is None or now < k.grace_until):
                return k
        return None

    def usable(self, now: datetime) -> tuple[PseudonymKey, ...]:
        return tuple(k for k in self.keys if k.grace_until is None or now < k.grace_until)


@dataclass(frozen=True, slots=True)
class WrappedPseudonymKey:
    """A pseudonym key as the trust list carries it: wrapped for each member."""

    key_id: str
    created_at: datetime
    grace_until: datetime | None
    body: EncryptedBody


def _binding(key_id: str) -> bytes:
    return hashlib.sha256(WRAP_LABEL + key_id.encode()).digest()


def wrap(key: PseudonymKey, recipients: Sequence[Recipient]) -> WrappedPseudonymKey:
    """``key`` wrapped for each of ``recipients`` (their trust-list encryption keys)."""
    body = crypto.encrypt_body(key.secret, _binding(key.key_id), recipients)
    return WrappedPseudonymKey(key.key_id, key.created_at, key.grace_until, body)


def unwrap(wrapped: WrappedPseudonymKey, node: NodeId, decrypter: EncryptionKey) -> PseudonymKey:
    """The key in clear for ``node``; ConfidentialityError when it is not wrapped for it or
    does not open, or opens to a key of another id."""
    secret = crypto.decrypt_body(wrapped.body, _binding(wrapped.key_id), node, decrypter)
    if len(secret) != 32 or pseudonym_key_id(secret) != wrapped.key_id:
        raise ConfidentialityError(
            Reason.DECRYPTION_FAILED,
            f"pseudonym key {wrapped.key_id} opens to another key",
            field="pseudonym_keys",
        )
    return PseudonymKey(wrapped.key_id, secret, wrapped.created_at, wrapped.grace_until)


def keyring_for(
    wrapped: Iterable[WrappedPseudonymKey], node: NodeId, decrypter: EncryptionKey
) -> Keyring:
    """Every key wrapped for ``node`` that opens (others are left out: a member added after
    a key was made does not hold it)."""
    keys: list[PseudonymKey] = []
    for w in wrapped:
        if not any(k.recipient == node for k in w.body.wrapped_keys):
            continue
        try:
            keys.append(unwrap(w, node, decrypter))
        except ConfidentialityError:
            continue
    return Keyring(tuple(keys))
