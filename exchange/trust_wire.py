"""The trust list as it travels: its Avro record (schemas/TrustList.avsc) and the checks that
open a signed trust-list file.

The file is a ``SignedEnvelope`` whose ``envelope`` holds the TrustList single-object
encoding (marker C3 01, 8-byte fingerprint, Avro binary) and whose ``signature`` is the root
key's Ed25519 signature over exactly those bytes (``key_id``: the root key's id).
:func:`signed_record` checks that signature against a trusted root key and returns the
decoded record; :func:`pinned_root_key` finds the root key named inside a file and refuses
it unless its :func:`root_fingerprint` is the pinned one. :class:`exchange.trust.TrustList`
builds itself from the record (:func:`list_fields`) and re-exports :func:`root_fingerprint`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from exchange import codec, crypto
from exchange.errors import ExchangeError, VerificationError
from exchange.ids import KeyId, NodeId
from exchange.keys import key_id_for
from exchange.pseudonyms.wire import pseudonym_key_from_avro, pseudonym_key_to_avro
from exchange.trust_entries import SMALL_ORDER, KeyEntry, Member, Revocation, bad

if TYPE_CHECKING:
    from exchange.trust import TrustList


def root_fingerprint(public_key: bytes) -> str:
    """The fingerprint a config pins the root key by: SHA-256 of the raw 32 bytes, hex."""
    return hashlib.sha256(public_key).hexdigest()


def to_avro(trust: TrustList) -> dict[str, Any]:
    """The TrustList record of ``trust`` as fastavro expects it."""

    def entry(k: KeyEntry) -> dict[str, Any]:
        return {
            "key_id": k.key_id,
            "public_key": k.public_key,
            "valid_from": k.valid_from,
            "valid_until": k.valid_until,
        }

    return {
        "federation": trust.federation,
        "version": trust.version,
        "issued_at": trust.issued_at,
        "root_public_key": trust.root_public_key,
        "members": [
            {
                "node_id": m.node_id,
                "name": m.name,
                "signing_keys": [entry(k) for k in m.signing_keys],
                "encryption_keys": [entry(k) for k in m.encryption_keys],
            }
            for m in trust.members.values()
        ],
        "revocations": [
            {"key_id": r.key_id, "revoked_at": r.revoked_at, "reason": r.reason}
            for r in trust.revocations.values()
        ],
        "pseudonym_keys": [pseudonym_key_to_avro(w) for w in trust.pseudonym_keys],
    }


def list_fields(d: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :class:`~exchange.trust.TrustList` from a decoded record."""

    def entry(k: Mapping[str, Any]) -> KeyEntry:
        return KeyEntry(KeyId(k["key_id"]), k["public_key"], k["valid_from"], k["valid_until"])

    return {
        "federation": d["federation"],
        "version": d["version"],
        "issued_at": d["issued_at"],
        "root_public_key": d["root_public_key"],
        "members": [
            Member(
                NodeId(m["node_id"]),
                m["name"],
                tuple(entry(k) for k in m["signing_keys"]),
                tuple(entry(k) for k in m["encryption_keys"]),
            )
            for m in d["members"]
        ],
        "revocations": [
            Revocation(KeyId(r["key_id"]), r["revoked_at"], r["reason"]) for r in d["revocations"]
        ],
        "pseudonym_keys": [pseudonym_key_from_avro(w) for w in d.get("pseudonym_keys", ())],
    }


def pinned_root_key(data: bytes, fingerprint: str) -> bytes:
    """The root key named inside the trust-list file ``data``, which must have the pinned
    ``fingerprint`` (BAD_TRUST_LIST naming both fingerprints otherwise). Not yet a proof
    that it signed the file: :func:`signed_record` checks that."""
    try:
        body, _, _ = codec.decode_signed(data)
        _, record = codec.decode(body, expected="TrustList")
        named = bytes(record["root_public_key"])
    except (ExchangeError, KeyError, TypeError) as exc:
        raise bad(f"not a signed trust list: {exc}") from exc
    found = root_fingerprint(named)
    if not hmac.compare_digest(found, fingerprint.strip().lower()):
        raise bad(
            f"the list's root key has fingerprint {found}, not the pinned {fingerprint}",
            "root_public_key",
        )
    return named


def signed_record(data: bytes, root_public_key: bytes) -> Mapping[str, Any]:
    """The TrustList record inside the trust-list file ``data``, once its signature verifies
    against the trusted ``root_public_key`` (BAD_TRUST_LIST otherwise)."""
    if not crypto.is_prime_order_point(root_public_key):
        raise bad(SMALL_ORDER, "root_public_key")
    try:
        body, signature, key_id = codec.decode_signed(data)
    except ExchangeError as exc:
        raise bad(f"not a signed trust list: {exc}") from exc
    if key_id != key_id_for(root_public_key):
        raise bad(
            f"signed by key {key_id}, not by the root key {key_id_for(root_public_key)}",
            "key_id",
        )
    try:
        crypto.verify(root_public_key, signature, body)
    except VerificationError:
        raise bad("the root signature does not verify", "signature") from None
    try:
        _, record = codec.decode(body, expected="TrustList")
    except ExchangeError as exc:
        raise bad(f"signed content is not a TrustList: {exc}") from exc
    return record
