"""Known-answer vectors for wire v2: whole records with real signatures and ciphertexts.

``python -m tests.vectors.wire_v2`` rewrites ``tests/vectors/wire-v2/*.json`` from fixed
inputs (keys from fixed seeds, the encryption's randomness injected); ``README.md`` there
says how another implementation checks itself against them. Regenerate only on purpose:
tests/exchange/test_known_answers.py proves the code reproduces them byte for byte.

Every intermediate value is computed here a second time from the primitives alone
(hashlib, cryptography's X25519 / HKDF / AES-GCM, libsodium's Ed25519), the way another
implementation would, and must equal what :func:`exchange.seal.seal` wrote.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import nacl.bindings
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from exchange import codec
from exchange.chain import Link
from exchange.crypto import EncryptedBody, Entropy, decrypt_body
from exchange.envelope import header_digest
from exchange.envelope.binary import encode_body
from exchange.ids import NodeId, Topic
from exchange.keys import EncryptionKey, SigningKey
from exchange.models import (
    Handling,
    HandlingCode,
    InformationReliability,
    SourceReliability,
    Tlp,
    parse_payload,
)
from exchange.seal import Sealed, seal
from exchange.topics import MessageType
from exchange.trust import KeyEntry, Member, TrustList
from tests.vectors.samples import PAYLOADS

FOLDER = Path(__file__).parent / "wire-v2"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MESSAGE_ID = UUID("01a22206-ca00-7123-8456-0123456789ab")  # a UUIDv7 of NOW


def _seed(label: str) -> bytes:
    """A fixed 32-byte secret named by ``label`` (SHA-256 of it): inputs anyone can rebuild."""
    return hashlib.sha256(f"ncp-exchange test vector: {label}".encode()).digest()


ROOT = SigningKey(_seed("root"))
FR = SigningKey(_seed("FR signing"))
ENCRYPTION = {n: EncryptionKey.from_bytes(_seed(f"{n} encryption")) for n in ("DE", "NL")}
ENTROPY = Entropy(_seed("content key"), _seed("nonce")[:12], _seed("ephemeral"))
HANDLING = Handling(
    tlp=Tlp.RED,
    code=HandlingCode.H3,
    restriction="Not to be shared with private parties.",
    source_reliability=SourceReliability.B,
    information_reliability=InformationReliability.TWO,
)
PLAIN_HANDLING = Handling(
    tlp=Tlp.GREEN,
    code=HandlingCode.H0,
    restriction=None,
    source_reliability=SourceReliability.A,
    information_reliability=InformationReliability.ONE,
)


def trust_list() -> TrustList:
    """FR signs; DE and NL receive. Keys valid from 2026-01-01."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    members = [Member(NodeId("FR"), "NCP FR", (KeyEntry.for_key(FR.public_bytes, t0),), ())]
    members += [
        Member(NodeId(n), f"NCP {n}", (), (KeyEntry.for_key(k.public_bytes, t0),))
        for n, k in ENCRYPTION.items()
    ]
    return TrustList(
        federation="ncp-vectors",
        version=1,
        issued_at=t0,
        root_public_key=ROOT.public_bytes,
        members=members,
    )


def _sealed(encrypted: bool) -> Sealed:
    payload = parse_payload(MessageType.OFFENCE_ALERT, PAYLOADS[MessageType.OFFENCE_ALERT], now=NOW)
    return seal(
        payload,
        signer=FR,
        sender=NodeId("FR"),
        topic=Topic("ncp.alerts.v1"),
        link=Link(7, _seed("previous envelope")),
        handling=HANDLING if encrypted else PLAIN_HANDLING,
        recipients=[NodeId("DE"), NodeId("NL")] if encrypted else [],
        trust=trust_list(),
        now=NOW,
        message_id=MESSAGE_ID,
        entropy=ENTROPY if encrypted else None,
    )


def _hkdf(shared: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(shared)


def _envelope_fields(sealed: Sealed) -> dict[str, Any]:
    e = sealed.envelope
    h = e.handling
    return {
        "message_id": str(e.message_id),
        "message_type": e.message_type.value,
        "topic": e.topic,
        "key": e.key,
        "sender": e.sender,
        "created_at_ms": int(e.created_at.timestamp() * 1000),
        "sequence": e.sequence,
        "previous_hash": None if e.previous_hash is None else e.previous_hash.hex(),
        "recipients": list(e.recipients),
        "handling": {
            "tlp": h.tlp.value,
            "code": h.code.value,
            "restriction": h.restriction,
            "source_reliability": h.source_reliability.value,
            "information_reliability": h.information_reliability.value,
        },
    }


def vector(encrypted: bool) -> dict[str, Any]:
    """One vector, every value recomputed from the primitives and checked against seal()."""
    sealed = _sealed(encrypted)
    envelope_bytes, signature, _ = codec.decode_signed(sealed.value)
    body = sealed.envelope.body
    # the header: the envelope bytes up to the body union's branch index
    body_bytes = _body_bytes(body)
    header = envelope_bytes[: len(envelope_bytes) - len(body_bytes)]
    digest = hashlib.sha256(header).digest()
    expected_sig = nacl.bindings.crypto_sign(envelope_bytes, FR._secret)[:64]
    assert signature == expected_sig, "Ed25519 is deterministic"
    out: dict[str, Any] = {
        "description": (
            "FR's OffenceAlert sealed for DE and NL (TLP:RED, H3)"
            if encrypted
            else "FR's OffenceAlert, plain (TLP:GREEN, H0)"
        ),
        "inputs": {
            "signing_seed": _seed("FR signing").hex(),
            "signing_public_key": FR.public_bytes.hex(),
            "key_id": FR.key_id,
            "envelope": _envelope_fields(sealed),
            "payload": (_plaintext(sealed) if encrypted else _plain(body)).hex(),
        },
        "intermediate": {
            "header": header.hex(),
            "header_digest": digest.hex(),
        },
        "output": {
            "envelope": envelope_bytes.hex(),
            "signature": signature.hex(),
            "record_key": sealed.key.decode(),
            "record_value": sealed.value.hex(),
            "envelope_hash": hashlib.sha256(envelope_bytes).hexdigest(),
        },
    }
    if encrypted:
        assert isinstance(body, EncryptedBody)
        out["inputs"] |= {
            "content_key": ENTROPY.content_key.hex(),
            "nonce": ENTROPY.nonce.hex(),
            "ephemeral_private_key": ENTROPY.ephemeral_private_key.hex(),
            "recipient_private_keys": {n: k.private_bytes().hex() for n, k in ENCRYPTION.items()},
        }
        payload = _plaintext(sealed)
        commitment = hashlib.sha256(
            b"ncp-exchange/v2 key-commitment" + digest + ENTROPY.content_key
        ).digest()
        ciphertext = AESGCM(ENTROPY.content_key).encrypt(ENTROPY.nonce, payload, digest)
        eph = X25519PrivateKey.from_private_bytes(ENTROPY.ephemeral_private_key)
        eph_pub = eph.public_key().public_bytes_raw()
        wraps = []
        for w in body.wrapped_keys:
            pub = ENCRYPTION[w.recipient].public_bytes
            shared = eph.exchange(X25519PublicKey.from_public_bytes(pub))
            info = b"ncp-exchange/v2 key-wrap" + digest + w.recipient.encode()
            kek = _hkdf(shared, eph_pub + pub, info)
            wrapped = AESGCM(kek).encrypt(bytes(12), ENTROPY.content_key, digest)
            assert wrapped == w.wrapped_key
            wraps.append(
                {
                    "recipient": w.recipient,
                    "recipient_public_key": pub.hex(),
                    "recipient_key_id": w.key_id,
                    "shared_secret": shared.hex(),
                    "hkdf_salt": (eph_pub + pub).hex(),
                    "hkdf_info": info.hex(),
                    "kek": kek.hex(),
                    "wrapped_key": wrapped.hex(),
                }
            )
        assert (body.ciphertext, body.key_commitment, body.ephemeral_public_key) == (
            ciphertext,
            commitment,
            eph_pub,
        )
        out["intermediate"] |= {
            "ephemeral_public_key": eph_pub.hex(),
            "ciphertext": ciphertext.hex(),
            "key_commitment": commitment.hex(),
            "wrapped_keys": wraps,
        }
    return out


def _plain(body: bytes | EncryptedBody) -> bytes:
    assert isinstance(body, bytes)
    return body


def _plaintext(sealed: Sealed) -> bytes:
    body = sealed.envelope.body
    assert isinstance(body, EncryptedBody)
    return decrypt_body(body, header_digest(sealed.envelope), NodeId("DE"), ENCRYPTION["DE"])


def _body_bytes(body: bytes | EncryptedBody) -> bytes:
    return encode_body(body)


def all_vectors() -> dict[str, dict[str, Any]]:
    """File name -> vector."""
    trust = trust_list()
    signed = trust.sign(ROOT)
    body, signature, _ = codec.decode_signed(signed)
    return {
        "record-plain.json": vector(False),
        "record-encrypted.json": vector(True),
        "trust-list.json": {
            "description": "The trust list the records verify against, signed by the root key",
            "inputs": {
                "root_seed": _seed("root").hex(),
                "root_public_key": ROOT.public_bytes.hex(),
                "root_fingerprint": hashlib.sha256(ROOT.public_bytes).hexdigest(),
            },
            "output": {
                "trust_list": body.hex(),
                "signature": signature.hex(),
                "signed_file": signed.hex(),
            },
        },
    }


def write() -> None:
    """Rewrite the vector files."""
    FOLDER.mkdir(exist_ok=True)
    for name, data in all_vectors().items():
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        (FOLDER / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write()
