"""What a trust list is made of: members (:class:`Member`), their keys with validity windows
(:class:`KeyEntry`) and revocations (:class:`Revocation`); with the helpers
:mod:`exchange.trust` and :mod:`exchange.trust_wire` share to refuse a malformed list
(:func:`bad`, BAD_TRUST_LIST) and to keep times as they travel (:func:`to_ms`). Every public
name is importable from :mod:`exchange.trust`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from exchange.errors import Reason, TrustListError
from exchange.ids import KeyId, NodeId
from exchange.keys import key_id_for

#: Under ZIP-215 (docs/signature-rule.md) anyone can sign for a small-order key.
SMALL_ORDER = (
    "not an Ed25519 key of the prime-order subgroup (small-order, mixed-order or"
    " non-canonical): under the ZIP-215 rule anyone could sign for it"
)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """A public key with its validity window ``[valid_from, valid_until)``."""

    key_id: KeyId
    public_key: bytes
    valid_from: datetime
    valid_until: datetime | None = None

    @classmethod
    def for_key(
        cls, public_key: bytes, valid_from: datetime, valid_until: datetime | None = None
    ) -> KeyEntry:
        """An entry whose key id is computed from ``public_key``."""
        return cls(key_id_for(public_key), public_key, valid_from, valid_until)

    def valid_at(self, at: datetime) -> bool:
        """Whether ``at`` falls inside the validity window."""
        return self.valid_from <= at and (self.valid_until is None or at < self.valid_until)


@dataclass(frozen=True, slots=True)
class Member:
    """One member node and its keys."""

    node_id: NodeId
    name: str
    signing_keys: tuple[KeyEntry, ...]
    encryption_keys: tuple[KeyEntry, ...]


@dataclass(frozen=True, slots=True)
class Revocation:
    """A revoked key: refused for messages created at or after ``revoked_at``."""

    key_id: KeyId
    revoked_at: datetime
    reason: str


def bad(detail: str, field: str | None = None) -> TrustListError:
    return TrustListError(Reason.BAD_TRUST_LIST, detail, field=field)


def to_ms(t: datetime, field: str) -> datetime:
    """``t`` in UTC truncated to the millisecond, as it travels (timestamp-millis)."""
    if t.tzinfo is None:
        raise bad("times must be timezone-aware", field)
    t = t.astimezone(UTC)
    return t.replace(microsecond=t.microsecond - t.microsecond % 1000)


def entry_ms(k: KeyEntry, field: str) -> KeyEntry:
    until = None if k.valid_until is None else to_ms(k.valid_until, f"{field}.valid_until")
    return replace(k, valid_from=to_ms(k.valid_from, f"{field}.valid_from"), valid_until=until)
