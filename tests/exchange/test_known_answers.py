"""The committed wire-v2 known-answer vectors (tests/vectors/wire-v2): the code reproduces
them byte for byte, and they verify and open as a receiver would."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import nacl.bindings
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from exchange.ids import NodeId
from exchange.keys import EncryptionKey
from exchange.seal import open_record
from exchange.trust import TrustList
from tests.vectors import wire_v2

FILES = sorted(wire_v2.FOLDER.glob("*.json"))


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((wire_v2.FOLDER / name).read_text(encoding="utf-8"))
    return data


def test_every_vector_file_is_reproduced_byte_for_byte() -> None:
    """Sealing the vectors' inputs again gives exactly the committed files."""
    assert {p.name for p in FILES} == set(wire_v2.all_vectors())
    for name, vector in wire_v2.all_vectors().items():
        committed = (wire_v2.FOLDER / name).read_text(encoding="utf-8")
        assert json.dumps(vector, indent=2, ensure_ascii=False) + "\n" == committed, name


@pytest.mark.parametrize("name", ["record-plain.json", "record-encrypted.json"])
def test_vector_records_verify_and_open_at_every_recipient(name: str) -> None:
    """Each record value verifies against the vectors' trust list, at an append time equal
    to created_at, and opens to the vector's payload."""
    v = _load(name)
    trust = TrustList.from_signed(
        bytes.fromhex(_load("trust-list.json")["output"]["signed_file"]),
        bytes.fromhex(_load("trust-list.json")["inputs"]["root_public_key"]),
    )
    created = datetime.fromtimestamp(v["inputs"]["envelope"]["created_at_ms"] / 1000, UTC)
    keys = v["inputs"].get("recipient_private_keys", {"DE": None})
    for node, private in keys.items():
        opened = open_record(
            bytes.fromhex(v["output"]["record_value"]),
            topic=v["inputs"]["envelope"]["topic"],
            key=v["output"]["record_key"].encode(),
            trust=trust,
            now=created + timedelta(seconds=1),
            appended_at=created,
            reader=NodeId(node),
            decryption_key=None
            if private is None
            else EncryptionKey.from_bytes(bytes.fromhex(private)),
        )
        assert opened.payload is not None
        assert opened.verified.envelope_hash.hex() == v["output"]["envelope_hash"]


def test_the_encrypted_vector_follows_the_documented_recipe_step_by_step() -> None:
    """What a Java or Go implementation does with the vector, from the primitives only."""
    v = _load("record-encrypted.json")
    i, m, o = v["inputs"], v["intermediate"], v["output"]
    envelope = bytes.fromhex(o["envelope"])
    header = bytes.fromhex(m["header"])
    assert envelope.startswith(header)
    digest = hashlib.sha256(header).digest()
    assert digest.hex() == m["header_digest"]
    public = bytes.fromhex(i["signing_public_key"])
    signature = bytes.fromhex(o["signature"])
    assert nacl.bindings.crypto_sign_open(signature + envelope, public) == envelope
    for w in m["wrapped_keys"]:
        private = X25519PrivateKey.from_private_bytes(
            bytes.fromhex(i["recipient_private_keys"][w["recipient"]])
        )
        eph = bytes.fromhex(m["ephemeral_public_key"])
        shared = private.exchange(X25519PublicKey.from_public_bytes(eph))
        assert shared.hex() == w["shared_secret"]
        kek = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=eph + private.public_key().public_bytes_raw(),
            info=b"ncp-exchange/v2 key-wrap" + digest + w["recipient"].encode(),
        ).derive(shared)
        assert kek.hex() == w["kek"]
        cek = AESGCM(kek).decrypt(bytes(12), bytes.fromhex(w["wrapped_key"]), digest)
        assert cek.hex() == i["content_key"]
        commitment = hashlib.sha256(b"ncp-exchange/v2 key-commitment" + digest + cek).digest()
        assert commitment.hex() == m["key_commitment"]
        plaintext = AESGCM(cek).decrypt(
            bytes.fromhex(i["nonce"]), bytes.fromhex(m["ciphertext"]), digest
        )
        assert plaintext.hex() == i["payload"]
