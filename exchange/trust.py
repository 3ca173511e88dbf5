"""The trust list: the federation's members, their keys and revocations.

The trust-list FILE is a ``SignedEnvelope`` (schemas/SignedEnvelope.avsc) whose
``envelope`` field holds the single-object encoding of a ``TrustList``
(schemas/TrustList.avsc: marker C3 01, 8-byte fingerprint, Avro binary), its
``signature`` the root key's Ed25519 signature over exactly those bytes, and its
``key_id`` the root key's id. Loading checks the signature against a root public
key the caller trusts (by default ``root.pub`` beside the file) and that the same
key is named inside the list.

Pinning: a node's config names the root key by fingerprint (:func:`root_fingerprint`:
SHA-256 of the raw 32-byte key, hex). :func:`load_trust_list` with ``root_fingerprint``
takes the root key named inside the list, refuses it unless its fingerprint is the
pinned one, then checks the signature with it: no root key file is read, so replacing
a folder cannot swap the root. Versions only go up: :func:`check_version` refuses a
list older than the highest one a node or auditor accepted (TRUST_LIST_ROLLBACK).
:class:`TrustHistory` holds every list published, each in force from its publication
time, for the auditor's replay.

Validity windows are ``[valid_from, valid_until)``; a key revoked at T refuses
every record appended at or after T (see exchange.seal: the broker's append time).

This module holds :class:`TrustList` (validation, look-ups, new versions) and loading; the
parts are in :mod:`exchange.trust_entries` (members, keys, revocations), the Avro record and
the signature checks in :mod:`exchange.trust_wire`, the history in
:mod:`exchange.trust_history`. Every public name is importable from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from exchange import codec, crypto, trust_wire
from exchange.errors import ExchangeError, Reason, TrustListError, VerificationError
from exchange.ids import KeyId, NodeId
from exchange.keys import SigningKey, key_id_for, load_public_key
from exchange.pseudonyms.keys import WrappedPseudonymKey
from exchange.trust_entries import SMALL_ORDER, KeyEntry, Member, Revocation, bad, entry_ms, to_ms
from exchange.trust_history import TrustHistory
from exchange.trust_wire import root_fingerprint

__all__ = [
    "ROOT_PUBLIC_FILE",
    "KeyEntry",
    "Member",
    "Revocation",
    "TrustHistory",
    "TrustList",
    "check_version",
    "load_trust_list",
    "root_fingerprint",
]

ROOT_PUBLIC_FILE = "root.pub"


class TrustList:
    """An immutable, validated trust list with indexes for the verification hot path."""

    __slots__ = (
        "_signing",
        "federation",
        "issued_at",
        "members",
        "pseudonym_keys",
        "revocations",
        "root_key_id",
        "root_public_key",
        "version",
    )

    def __init__(
        self,
        *,
        federation: str,
        version: int,
        issued_at: datetime,
        root_public_key: bytes,
        members: Iterable[Member],
        revocations: Iterable[Revocation] = (),
        pseudonym_keys: Iterable[WrappedPseudonymKey] = (),
    ) -> None:
        if len(root_public_key) != 32:
            raise bad("the root public key is not 32 bytes", "root_public_key")
        if not crypto.is_prime_order_point(root_public_key):
            raise bad(SMALL_ORDER, "root_public_key")
        if version < 1:
            raise bad("version starts at 1", "version")
        self.federation = federation
        self.version = version
        self.issued_at = to_ms(issued_at, "issued_at")
        self.root_public_key = root_public_key
        self.root_key_id = key_id_for(root_public_key)
        by_node: dict[NodeId, Member] = {}
        signing: dict[KeyId, tuple[NodeId, KeyEntry]] = {}
        seen: set[KeyId] = set()
        for i, m in enumerate(members):
            where = f"members[{i}]"
            m = replace(
                m,
                signing_keys=tuple(
                    entry_ms(k, f"{where}.signing_keys[{j}]") for j, k in enumerate(m.signing_keys)
                ),
                encryption_keys=tuple(
                    entry_ms(k, f"{where}.encryption_keys[{j}]")
                    for j, k in enumerate(m.encryption_keys)
                ),
            )
            if m.node_id in by_node:
                raise bad(f"member {m.node_id} listed twice", f"{where}.node_id")
            by_node[m.node_id] = m
            for kind, entries in (
                ("signing_keys", m.signing_keys),
                ("encryption_keys", m.encryption_keys),
            ):
                for j, k in enumerate(entries):
                    at = f"{where}.{kind}[{j}]"
                    if len(k.public_key) != 32:
                        raise bad("public key is not 32 bytes", f"{at}.public_key")
                    if k.key_id != key_id_for(k.public_key):
                        raise bad(
                            f"key id {k.key_id} does not match its public key", f"{at}.key_id"
                        )
                    if k.key_id in seen:
                        raise bad(f"key {k.key_id} listed twice", f"{at}.key_id")
                    if kind == "signing_keys" and not crypto.is_prime_order_point(k.public_key):
                        raise bad(SMALL_ORDER, f"{at}.public_key")
                    if k.valid_until is not None and k.valid_until <= k.valid_from:
                        raise bad("valid_until is not after valid_from", f"{at}.valid_until")
                    seen.add(k.key_id)
                    if kind == "signing_keys":
                        signing[k.key_id] = (m.node_id, k)
        revoked: dict[KeyId, Revocation] = {}
        for i, r in enumerate(revocations):
            r = replace(r, revoked_at=to_ms(r.revoked_at, f"revocations[{i}].revoked_at"))
            earlier = revoked.get(r.key_id)
            if earlier is None or r.revoked_at < earlier.revoked_at:
                revoked[r.key_id] = r
        self.members: Mapping[NodeId, Member] = MappingProxyType(by_node)
        self.revocations: Mapping[KeyId, Revocation] = MappingProxyType(revoked)
        self._signing = signing
        #: The federation pseudonym keys (exchange.pseudonyms.keys), wrapped for members.
        self.pseudonym_keys: tuple[WrappedPseudonymKey, ...] = tuple(pseudonym_keys)

    # ---- look-ups ---------------------------------------------------------------

    def signing_entry(self, key_id: str) -> tuple[NodeId, KeyEntry]:
        """The owner and entry of a signing key, whatever the time (UNKNOWN_KEY if absent)."""
        found = self._signing.get(KeyId(key_id))
        if found is None:
            raise VerificationError(
                Reason.UNKNOWN_KEY, f"no signing key {key_id!r} in the trust list", field="key_id"
            )
        return found

    def check_valid(self, entry: KeyEntry, at: datetime) -> None:
        """Raise KEY_NOT_VALID_AT_TIME / REVOKED_KEY unless ``entry`` may be used at ``at``.

        ``at`` is a record's append time (the broker's clock) when it was read from Kafka."""
        revocation = self.revocations.get(entry.key_id)
        if (
            revocation is None
            and entry.valid_from <= at
            and (entry.valid_until is None or at < entry.valid_until)
        ):  # every record's case, decided without a call
            return
        if revocation is not None and revocation.revoked_at <= at:
            raise VerificationError(
                Reason.REVOKED_KEY,
                f"key {entry.key_id} revoked at {revocation.revoked_at.isoformat()} "
                f"({revocation.reason}), record time {at.isoformat()}",
                field="key_id",
            )
        if not entry.valid_at(at):
            until = entry.valid_until.isoformat() if entry.valid_until else "open"
            raise VerificationError(
                Reason.KEY_NOT_VALID_AT_TIME,
                f"key {entry.key_id} is valid from {entry.valid_from.isoformat()} "
                f"until {until}, not at {at.isoformat()}",
                field="key_id",
            )

    def signing_key(self, key_id: KeyId, at: datetime) -> tuple[NodeId, bytes]:
        """The owner and raw public key of signing key ``key_id``, usable at ``at``."""
        node, entry = self.signing_entry(key_id)
        self.check_valid(entry, at)
        return node, entry.public_key

    def member(self, node: NodeId) -> Member:
        """The member ``node`` (UNKNOWN_SENDER if it is not one)."""
        m = self.members.get(node)
        if m is None:
            raise VerificationError(
                Reason.UNKNOWN_SENDER,
                f"{node!r} is not a member of {self.federation}",
                field="sender",
            )
        return m

    def encryption_key(self, node: NodeId, at: datetime) -> KeyEntry:
        """The encryption key of ``node`` to use at ``at``: the newest valid, unrevoked one."""
        m = self.member(node)
        usable = [
            k
            for k in m.encryption_keys
            if k.valid_at(at)
            and not ((r := self.revocations.get(k.key_id)) is not None and r.revoked_at <= at)
        ]
        if not usable:
            raise VerificationError(
                Reason.KEY_NOT_VALID_AT_TIME,
                f"{node} has no encryption key valid at {at.isoformat()}",
                field="recipients",
            )
        return max(usable, key=lambda k: k.valid_from)

    # ---- new versions -----------------------------------------------------------

    def _next(self, issued_at: datetime, **changes: Any) -> TrustList:
        fields: dict[str, Any] = {
            "federation": self.federation,
            "version": self.version + 1,
            "issued_at": issued_at,
            "root_public_key": self.root_public_key,
            "members": tuple(self.members.values()),
            "revocations": tuple(self.revocations.values()),
            "pseudonym_keys": self.pseudonym_keys,
        }
        fields.update(changes)
        return TrustList(**fields)

    def revoke(
        self, key_id: KeyId, at: datetime, reason: str, *, issued_at: datetime | None = None
    ) -> TrustList:
        """A new version (version + 1) in which ``key_id`` is revoked from ``at``."""
        if key_id not in self._signing and not any(
            k.key_id == key_id for m in self.members.values() for k in m.encryption_keys
        ):
            raise bad(f"no key {key_id} to revoke", "key_id")
        revs = (*self.revocations.values(), Revocation(key_id, at, reason))
        return self._next(issued_at or at, revocations=revs)

    def with_pseudonym_keys(
        self, keys: Iterable[WrappedPseudonymKey], *, issued_at: datetime
    ) -> TrustList:
        """A new version carrying ``keys`` as its pseudonym keys (exchange.pseudonyms)."""
        return self._next(issued_at, pseudonym_keys=tuple(keys))

    def with_member(self, member: Member, *, issued_at: datetime) -> TrustList:
        """A new version with ``member`` added or replaced."""
        others = tuple(m for m in self.members.values() if m.node_id != member.node_id)
        return self._next(issued_at, members=(*others, member))

    def with_key_window(
        self,
        key_id: KeyId,
        valid_from: datetime,
        valid_until: datetime | None,
        *,
        issued_at: datetime,
    ) -> TrustList:
        """A new version with the validity window of ``key_id`` changed (tests of expired keys)."""

        def rewindowed(keys: tuple[KeyEntry, ...]) -> tuple[KeyEntry, ...]:
            return tuple(
                replace(k, valid_from=valid_from, valid_until=valid_until)
                if k.key_id == key_id
                else k
                for k in keys
            )

        members = tuple(
            replace(
                m,
                signing_keys=rewindowed(m.signing_keys),
                encryption_keys=rewindowed(m.encryption_keys),
            )
            for m in self.members.values()
        )
        return self._next(issued_at, members=members)

    # ---- wire ---------------------------------------------------------------------

    def to_avro(self) -> dict[str, Any]:
        """The TrustList record as fastavro expects it."""
        return trust_wire.to_avro(self)

    @classmethod
    def from_avro(cls, d: Mapping[str, Any]) -> TrustList:
        """From a decoded TrustList record."""
        return cls(**trust_wire.list_fields(d))

    def encode(self) -> bytes:
        """The TrustList single-object encoding (what the root key signs)."""
        return codec.encode("TrustList", self.to_avro())

    def sign(self, root: SigningKey) -> bytes:
        """The trust-list file: a SignedEnvelope over :meth:`encode`, signed by the root key."""
        if root.public_bytes != self.root_public_key:
            raise bad("signing key is not this list's root key", "root_public_key")
        body = self.encode()
        return codec.encode_signed(body, root.sign(body), root.key_id)

    @classmethod
    def from_signed_pinned(cls, data: bytes, fingerprint: str) -> TrustList:
        """Verify and parse a trust-list file whose root key has the pinned ``fingerprint``.

        The root key is the one named inside the list; it must match the pin (BAD_TRUST_LIST
        naming both fingerprints otherwise), and then sign the list.
        """
        return cls.from_signed(data, trust_wire.pinned_root_key(data, fingerprint))

    @classmethod
    def from_signed(cls, data: bytes, root_public_key: bytes) -> TrustList:
        """Verify and parse a trust-list file against the trusted ``root_public_key``."""
        trust = cls.from_avro(trust_wire.signed_record(data, root_public_key))
        if trust.root_public_key != root_public_key:
            raise bad(
                "the root key named inside differs from the trusted root key", "root_public_key"
            )
        return trust

    def __repr__(self) -> str:
        return (
            f"TrustList(federation={self.federation!r}, version={self.version}, "
            f"members={sorted(self.members)})"
        )


def check_version(trust: TrustList, highest: int | None) -> None:
    """Refuse ``trust`` (TRUST_LIST_ROLLBACK) when older than the ``highest`` version accepted."""
    if highest is not None and trust.version < highest:
        raise TrustListError(
            Reason.TRUST_LIST_ROLLBACK,
            f"trust list version {trust.version} is older than version {highest}, the highest"
            " accepted before: refusing a rolled-back list",
            field="version",
        )


def load_trust_list(
    path: Path,
    root_public_key: bytes | Path | None = None,
    *,
    root_fingerprint: str | None = None,
) -> TrustList:
    """Read and verify a trust-list file.

    ``root_fingerprint``: the pinned root key (see the module doc); then ``root_public_key``
    is not needed, and when given must have that fingerprint too. Otherwise
    ``root_public_key``: raw 32 bytes, a PEM file, or None for ``root.pub`` beside ``path``.
    """
    path = Path(path)
    if root_fingerprint is not None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise bad(f"cannot read {path}: {exc.strerror or exc}", str(path)) from exc
        trust = TrustList.from_signed_pinned(data, root_fingerprint)
        if root_public_key is not None:
            key = (
                load_public_key(root_public_key)
                if isinstance(root_public_key, Path)
                else root_public_key
            )
            if key != trust.root_public_key:
                raise bad("the root key file does not match the pinned fingerprint", str(path))
        return trust
    if root_public_key is None:
        root_public_key = path.parent / ROOT_PUBLIC_FILE
    if isinstance(root_public_key, Path):
        try:
            root_public_key = load_public_key(root_public_key)
        except ExchangeError as exc:
            raise bad(f"root public key: {exc}", str(root_public_key)) from exc
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise bad(f"cannot read {path}: {exc.strerror or exc}", str(path)) from exc
    return TrustList.from_signed(data, root_public_key)
