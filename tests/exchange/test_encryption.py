"""Recipient encryption: X25519 + HKDF-SHA256 + AES-256-GCM (exchange.crypto, seal)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from exchange import codec, crypto
from exchange.crypto import EncryptedBody, Recipient, WrappedKey
from exchange.envelope import Envelope, encode_envelope
from exchange.errors import ConfidentialityError, ExchangeError, Reason
from exchange.ids import NodeId
from exchange.keys import EncryptionKey
from exchange.models import Tlp
from exchange.seal import open_record
from exchange.uuid7 import uuid7
from tests.helpers.federation import Federation, handling, make_alert, make_federation

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


def _binding() -> bytes:
    """A 32-byte header digest, as wire v2 binds bodies to (any header will do here)."""
    return hashlib.sha256(uuid7(NOW).bytes).digest()


def _recipient(node: str, key: EncryptionKey) -> Recipient:
    return Recipient(NodeId(node), key.key_id, key.public_bytes)


@pytest.fixture
def keys() -> dict[str, EncryptionKey]:
    return {n: EncryptionKey.generate() for n in ("DE", "NL", "FR")}


def test_each_recipient_decrypts_the_same_payload(keys: dict[str, EncryptionKey]) -> None:
    """Every named recipient recovers the payload with its own key."""
    mid = _binding()
    payload = os.urandom(1000)
    body = crypto.encrypt_body(
        payload, mid, [_recipient("DE", keys["DE"]), _recipient("NL", keys["NL"])]
    )
    assert payload not in body.ciphertext
    assert [w.recipient for w in body.wrapped_keys] == ["DE", "NL"]
    for node in ("DE", "NL"):
        assert crypto.decrypt_body(body, mid, NodeId(node), keys[node]) == payload


def test_the_recipe_is_the_documented_one(keys: dict[str, EncryptionKey]) -> None:
    """An independent implementation of the documented recipe decrypts our body."""
    mid = _binding()
    body = crypto.encrypt_body(b"secret", mid, [_recipient("DE", keys["DE"])])
    # The recipient side written out from the module doc, with cryptography only.
    raw = keys["DE"]
    shared = raw.exchange(body.ephemeral_public_key)
    kek = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=body.ephemeral_public_key + raw.public_bytes,
        info=b"ncp-exchange/v2 key-wrap" + mid + b"DE",
    ).derive(shared)
    cek = AESGCM(kek).decrypt(bytes(12), body.wrapped_keys[0].wrapped_key, mid)
    commitment = hashlib.sha256(b"ncp-exchange/v2 key-commitment" + mid + cek).digest()
    assert body.key_commitment == commitment
    assert AESGCM(cek).decrypt(body.nonce, body.ciphertext, mid) == b"secret"
    assert len(body.nonce) == 12
    assert len(body.ephemeral_public_key) == 32
    assert isinstance(X25519PublicKey.from_public_bytes(body.ephemeral_public_key), X25519PublicKey)


def test_a_node_without_a_wrapped_key_cannot_decrypt(keys: dict[str, EncryptionKey]) -> None:
    """A node with no wrapped key gets DECRYPTION_FAILED."""
    mid = _binding()
    body = crypto.encrypt_body(b"secret", mid, [_recipient("DE", keys["DE"])])
    with pytest.raises(ConfidentialityError) as info:
        crypto.decrypt_body(body, mid, NodeId("NL"), keys["NL"])
    assert info.value.reason is Reason.DECRYPTION_FAILED


def test_a_key_wrapped_for_another_node_does_not_open(keys: dict[str, EncryptionKey]) -> None:
    """Relabelling DE's wrapped key as NL's does not let NL decrypt (the KEK binds the node)."""
    mid = _binding()
    body = crypto.encrypt_body(b"secret", mid, [_recipient("DE", keys["DE"])])
    stolen = replace(
        body,
        wrapped_keys=(
            WrappedKey(NodeId("NL"), keys["NL"].key_id, body.wrapped_keys[0].wrapped_key),
        ),
    )
    with pytest.raises(ConfidentialityError, match="body_not_bound"):
        crypto.decrypt_body(stolen, mid, NodeId("NL"), keys["NL"])
    relabelled = replace(
        body,
        wrapped_keys=(
            WrappedKey(NodeId("NL"), keys["DE"].key_id, body.wrapped_keys[0].wrapped_key),
        ),
    )
    with pytest.raises(ConfidentialityError):
        crypto.decrypt_body(relabelled, mid, NodeId("NL"), keys["DE"])


def test_any_tampering_or_other_header_fails(keys: dict[str, EncryptionKey]) -> None:
    """Changing ciphertext, nonce, wrapped key, ephemeral key or header digest fails to open."""
    mid = _binding()
    body = crypto.encrypt_body(b"secret payload", mid, [_recipient("DE", keys["DE"])])
    w = body.wrapped_keys[0]

    def flip(b: bytes) -> bytes:
        return bytes([b[0] ^ 1]) + b[1:]

    variants: list[tuple[EncryptedBody, bytes]] = [
        (replace(body, ciphertext=flip(body.ciphertext)), mid),
        (replace(body, nonce=flip(body.nonce)), mid),
        (replace(body, ephemeral_public_key=flip(body.ephemeral_public_key)), mid),
        (replace(body, wrapped_keys=(replace(w, wrapped_key=flip(w.wrapped_key)),)), mid),
        (replace(body, nonce=b"short"), mid),
        (body, _binding()),
    ]
    for variant, message_id in variants:
        with pytest.raises(ConfidentialityError) as info:
            crypto.decrypt_body(variant, message_id, NodeId("DE"), keys["DE"])
        assert isinstance(info.value, ExchangeError)
        assert info.value.reason in (Reason.BODY_NOT_BOUND, Reason.DECRYPTION_FAILED)


def test_key_files_round_trip_for_decryption(
    tmp_path: Path, keys: dict[str, EncryptionKey]
) -> None:
    """An encryption key saved and loaded again still decrypts."""
    mid = _binding()
    keys["DE"].save(tmp_path / "e.key")
    body = crypto.encrypt_body(b"x", mid, [_recipient("DE", keys["DE"])])
    assert (
        crypto.decrypt_body(body, mid, NodeId("DE"), EncryptionKey.load(tmp_path / "e.key")) == b"x"
    )


# --- through seal / open_record -------------------------------------------------------------


def _resign(fed: Federation, envelope: Envelope, sender: str = "FR") -> bytes:
    body = encode_envelope(envelope)
    key = fed.nodes[NodeId(sender)].signing
    return codec.encode_signed(body, key.sign(body), key.key_id)


def test_body_for_de_is_read_by_de_and_skipped_by_nl(tmp_path: Path) -> None:
    """A record encrypted for DE opens at DE; NL (not a recipient) gets payload None."""
    fed = make_federation(tmp_path)
    alert = make_alert()
    sealed = fed.seal(alert, "FR", recipients=["DE"], handling=handling(Tlp.RED))
    assert alert.description.encode() not in sealed.value
    assert fed.open(sealed, "DE").payload == alert
    skipped = fed.open(sealed, "NL")
    assert skipped.payload is None
    assert skipped.verified.envelope.recipients == ("DE",)


def test_listed_reader_without_wrapped_key_is_refused(tmp_path: Path) -> None:
    """A record listing NL without a wrapped key for NL is refused: WRAPPED_KEYS_MISMATCH."""
    fed = make_federation(tmp_path)
    sealed = fed.seal_alert("FR", recipients=["DE"])
    forged = sealed.envelope._replace(recipients=(NodeId("DE"), NodeId("NL")))
    value = _resign(fed, forged)
    with pytest.raises(ExchangeError) as info:
        open_record(
            value,
            topic=sealed.envelope.topic,
            key=sealed.key,
            trust=fed.trust,
            now=NOW,
            reader=NodeId("NL"),
            decryption_key=fed.nodes[NodeId("NL")].encryption,
        )
    assert info.value.reason is Reason.WRAPPED_KEYS_MISMATCH


def test_listed_reader_without_its_key_cannot_open(tmp_path: Path) -> None:
    """A recipient opening without a decryption key, or with another key, gets DECRYPTION_FAILED."""
    fed = make_federation(tmp_path)
    sealed = fed.seal_alert("FR", recipients=["DE"])
    for key in (None, fed.nodes[NodeId("NL")].encryption):
        with pytest.raises(ConfidentialityError) as info:
            open_record(
                sealed.value,
                topic=sealed.envelope.topic,
                key=sealed.key,
                trust=fed.trust,
                now=NOW,
                reader=NodeId("DE"),
                decryption_key=key,
            )
        assert info.value.reason is Reason.DECRYPTION_FAILED


def test_every_recipient_reads_a_multi_recipient_record(tmp_path: Path) -> None:
    """With recipients DE and NL, both read the payload and FR (the sender) is skipped."""
    fed = make_federation(tmp_path)
    sealed = fed.seal_alert("FR", recipients=["DE", "NL"])
    assert fed.open(sealed, "DE").payload == fed.open(sealed, "NL").payload is not None
    assert fed.open(sealed, "FR").payload is None


def test_recipient_without_valid_encryption_key_cannot_be_sealed_for(tmp_path: Path) -> None:
    """Sealing for a node that is not a member fails with UNKNOWN_SENDER."""
    fed = make_federation(tmp_path)
    with pytest.raises(ExchangeError) as info:
        fed.seal_alert("FR", recipients=["XX"])
    assert info.value.reason is Reason.UNKNOWN_SENDER
