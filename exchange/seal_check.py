"""Step 1 of reading a record: its Ed25519 signature, alone or in batches.

Reads the SignedEnvelope single-object encoding (exchange.codec)::

    C3 01 | fp(SignedEnvelope) | len | envelope bytes | len | Ed25519 signature (64) | len | key_id

looks ``key_id`` up in the trust list (UNKNOWN_KEY) and verifies the signature over
exactly the envelope bytes under ZIP-215 (BAD_SIGNATURE); nothing is decoded before it
holds. A :class:`SignatureChecked` says it did; the rest of the checks are in
:mod:`exchange.seal_open` (:func:`~exchange.seal_open.verify_checked`).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from typing import Any, NamedTuple, Self

from exchange import codec, crypto
from exchange.errors import ExchangeError, Reason, VerificationError
from exchange.ids import KeyId, NodeId
from exchange.seal_rules import _refuse, _sealed_only, _sha256
from exchange.trust import KeyEntry, TrustList

__all__ = ["SignatureChecked", "check_own", "check_signature", "check_signatures"]

# The only way to make a SignatureChecked (its constructor raises).
_new_checked = tuple.__new__


class _CheckedFields(NamedTuple):
    envelope_bytes: bytes
    key_id: KeyId
    owner: NodeId
    entry: KeyEntry


class SignatureChecked(_CheckedFields):
    """A record value whose Ed25519 signature holds (step 1 of :func:`verify_record`).

    Made by :func:`check_signature`, :func:`check_signatures` and :func:`check_own` only
    (see :class:`Verified`): :func:`verify_checked` trusts that the signature was checked,
    so a hand-made one would skip it.
    """

    __slots__ = ()

    def __new__(cls, *args: object, **kwargs: object) -> Self:
        raise _sealed_only("SignatureChecked")

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> Self:  # type: ignore[override]
        raise _sealed_only("SignatureChecked")

    def _replace(self, **kwargs: Any) -> Self:
        raise _sealed_only("SignatureChecked")

    def __reduce__(self) -> tuple[Any, ...]:
        raise _sealed_only("SignatureChecked")


def check_signature(value: bytes, trust: TrustList) -> SignatureChecked:
    """Step 1 of :func:`verify_record`: parse the SignedEnvelope, find the key, verify.

    Nothing is decoded before this holds. For many records, :func:`check_signatures`
    verifies them in one batch check, several times faster.
    """
    envelope_bytes, signature, key_id = codec.decode_signed(value)
    owner, entry = trust.signing_entry(key_id)
    try:
        crypto.verify(entry.public_key, signature, envelope_bytes)
    except VerificationError:
        raise _bad_signature(key_id) from None
    return _new_checked(SignatureChecked, (envelope_bytes, entry.key_id, owner, entry))


def _bad_signature(key_id: str) -> VerificationError:
    return _refuse(
        Reason.BAD_SIGNATURE, f"signature does not verify with key {key_id}", "signature"
    )


def check_signatures(
    values: Sequence[bytes], trust: TrustList | Sequence[TrustList]
) -> list[SignatureChecked | ExchangeError]:
    """:func:`check_signature` of each value, in order, with ONE batch verification.

    Each value is parsed and its key looked up first (an error here is that value's
    verdict: MALFORMED, UNKNOWN_KEY ...); the signatures of the rest are verified together
    (``crypto.verify_many``). Under ZIP-215 each verdict is that of a single check, so
    exactly the bad signatures come back as BAD_SIGNATURE, whatever else shares the batch.
    ``trust``: one list for all, or one per value (an auditor judging each record by the
    list in force at its time). Never raises ExchangeError: it is returned in its place.
    The native batch check releases the GIL, so threads can run this side by side.
    """
    lists = [trust] * len(values) if isinstance(trust, TrustList) else trust
    out: list[SignatureChecked | ExchangeError | None] = []
    todo: list[int] = []
    items: list[tuple[bytes, bytes, bytes]] = []
    keyed: list[tuple[bytes, KeyId, NodeId, KeyEntry]] = []
    decode = codec.decode_signed
    for i, value in enumerate(values):
        try:
            envelope_bytes, signature, key_id = decode(value)
            owner, entry = lists[i].signing_entry(key_id)
        except ExchangeError as exc:
            out.append(exc)
            continue
        out.append(None)
        todo.append(i)
        items.append((entry.public_key, signature, envelope_bytes))
        keyed.append((envelope_bytes, entry.key_id, owner, entry))
    if items:
        for i, ok, fields in zip(todo, crypto.verify_many(items), keyed, strict=True):
            out[i] = _new_checked(SignatureChecked, fields) if ok else _bad_signature(fields[1])
    return out  # type: ignore[return-value]  # every None was replaced above


def check_own(value: bytes, trust: TrustList, known: Container[bytes]) -> SignatureChecked | None:
    """Step 1 for a record this node may have written itself, at the cost of one hash.

    ``known`` holds the envelope hashes of what this node signed (its outbox). When the
    record's envelope hashes to one of them, its bytes are exactly what this node signed,
    so the signature need not be checked again: the SignatureChecked is returned as
    :func:`check_signature` would. None when the hash is not known: then only
    :func:`check_signature` may decide (a record signed with this node's key that it never
    wrote means the key is in someone else's hands).
    """
    envelope_bytes, _signature, key_id = codec.decode_signed(value)
    if _sha256(envelope_bytes).digest() not in known:
        return None
    owner, entry = trust.signing_entry(key_id)
    return _new_checked(SignatureChecked, (envelope_bytes, entry.key_id, owner, entry))
