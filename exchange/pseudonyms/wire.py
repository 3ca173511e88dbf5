"""The trust list's ``pseudonym_keys`` entries <-> Avro dicts (schemas/TrustList.avsc).

Byte layout: each entry is a ``WrappedPseudonymKey`` record, the fields of an
exchange.crypto.EncryptedBody (ephemeral X25519 key, 12-byte nonce, ciphertext of the
32-byte key plus its 16-byte tag, 32-byte key commitment, one 48-byte wrapped content key
per member) beside the key's id, creation time and grace end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exchange.crypto import EncryptedBody, WrappedKey
from exchange.ids import KeyId, NodeId
from exchange.pseudonyms.keys import WrappedPseudonymKey

__all__ = ["pseudonym_key_from_avro", "pseudonym_key_to_avro"]


def pseudonym_key_to_avro(w: WrappedPseudonymKey) -> dict[str, Any]:
    return {
        "key_id": w.key_id,
        "created_at": w.created_at,
        "grace_until": w.grace_until,
        "ephemeral_public_key": w.body.ephemeral_public_key,
        "nonce": w.body.nonce,
        "ciphertext": w.body.ciphertext,
        "key_commitment": w.body.key_commitment,
        "wrapped_keys": [
            {"recipient": k.recipient, "key_id": k.key_id, "wrapped_key": k.wrapped_key}
            for k in w.body.wrapped_keys
        ],
    }


def pseudonym_key_from_avro(d: Mapping[str, Any]) -> WrappedPseudonymKey:
    body = EncryptedBody(
        d["ephemeral_public_key"],
        d["nonce"],
        d["ciphertext"],
        tuple(
            WrappedKey(NodeId(k["recipient"]), KeyId(k["key_id"]), k["wrapped_key"])
            for k in d["wrapped_keys"]
        ),
        d["key_commitment"],
    )
    return WrappedPseudonymKey(d["key_id"], d["created_at"], d["grace_until"], body)
