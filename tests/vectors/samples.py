"""Sample records for the codec and model tests, and the golden-vector generator.

``python -m tests.vectors.samples`` rewrites ``tests/vectors/*.json``: one file per
record, holding the schema name, the record in tagged JSON (bytes as
``{"$bytes": hex}``, timestamps as ``{"$timestamp_ms": int}``, dates as
``{"$date": "YYYY-MM-DD"}``), the fingerprint and the single-object encoding in hex.
Regenerate only on purpose: the committed vectors pin the wire format.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from exchange import codec
from exchange.models import parse_payload, to_avro
from exchange.topics import MessageType

VECTORS = Path(__file__).parent
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MESSAGE_ID = UUID("019ac9f2-6a00-7000-8000-000000000001")
ALERT_ID = "6f1c2e4a-3b5d-4c7e-9f80-1a2b3c4d5e6f"
QUERY_ID = "0b8e7d6c-5a4f-4e3d-8c2b-1a0f9e8d7c6b"

#: One valid input (JSON-like, as a connector or the CLI would give it) per payload type.
PAYLOADS: dict[MessageType, dict[str, Any]] = {
    MessageType.OFFENCE_ALERT: {
        "alert_id": ALERT_ID,
        "title": "Fake online shop selling counterfeit medicines",
        "category": "FRAUDULENT_SALES",
        "observed_at": "2026-11-27T09:30:00.250Z",
        "indicators": [
            {"type": "URL", "value": "https://pharma-deals.example.com/order?id=42"},
            {"type": "DOMAIN", "value": "pharma-deals.example.com"},
            {"type": "IP_ADDRESS", "value": "192.0.2.17"},
            {
                "type": "FILE_HASH",
                "value": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "hash_algorithm": "SHA256",
            },
            {"type": "EMAIL", "value": "orders@pharma-deals.example.com"},
            {
                "type": "CRYPTO_WALLET",
                "value": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
                "currency": "BTC",
            },
            {"type": "ONLINE_HANDLE", "value": "@pharmadeals", "platform": "Telegram"},
        ],
        "description": "Victims paid by card and received nothing; the shop reappears weekly.",
        "reporting_source": "VICTIM_COMPANY",
        "language": "fr",
        "country_of_origin": "FR",
        "case_reference": "FR-OCLCTIC-2026-0042",
    },
    MessageType.BLACKLIST_DELTA: {
        "list_id": "fr.csam-urls",
        "base_version": 41,
        "version": 42,
        "added": [
            {
                "kind": "URL",
                "value": "http://abuse.example.net/gallery/17",
                "category": "CHILD_SEXUAL_ABUSE_MATERIAL",
                "added_at": "2026-11-28T08:00:00Z",
            },
            {
                "kind": "DOMAIN",
                "value": "bad-host.example",
                "category": "CHILD_SEXUAL_ABUSE_MATERIAL",
                "added_at": "2026-11-28T08:05:00Z",
            },
            {
                "kind": "HASH",
                "algorithm": "SHA256",
                "value": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "category": "CHILD_SEXUAL_ABUSE_MATERIAL",
                "added_at": "2026-11-28T08:06:00Z",
                "reason": "known image, hotline match",
                "expires_at": "2027-11-28T08:06:00Z",
            },
            {
                "kind": "IP",
                "value": "198.51.100.0/24",
                "category": "CHILD_SEXUAL_ABUSE_MATERIAL",
                "added_at": "2026-11-28T08:07:00Z",
            },
        ],
        "removed": [{"kind": "DOMAIN", "value": "cleaned.example.org"}],
        "reason": "daily review by the hotline",
    },
    MessageType.PSEUDONYM_QUERY: {
        "query_id": QUERY_ID,
        "platform": "example-market",
        "category": "ILLICIT_DRUG_TRADE",
        "justification": "Vendor linked to three seizures in case DE-BKA-2026-77.",
        "requested_detail": "HIT_ONLY",
        "requester": "DE",
        "blinded_handle": "5d41402abc4b2a76b9719d911017c592" * 2,
        "pseudonym_key_id": "0123456789abcdef",
        "purpose": "Investigation DE-BKA-2026-77",
        "legal_basis": "StPO 163",
    },
    MessageType.PSEUDONYM_RESPONSE: {
        "query_id": QUERY_ID,
        "in_reply_to": "019ac9f2-6a00-7000-8000-0000000000aa",
        "hit": True,
        "details": "Known since 2025 as a vendor on two markets.",
        "case_reference": "NL-2025-1187",
        "outcome": "DETAILS",
        "contact_unit": "NHTCU",
        "responder": "NL",
    },
    MessageType.STATISTICAL_INDICATOR: {
        "country": "PL",
        "period_start": "2026-10-01",
        "period_end": "2026-10-31",
        "counts": [
            {"category": "IDENTITY_FRAUD", "count": 312},
            {"category": "ATTACK_ON_INFORMATION_SYSTEMS", "count": 57},
        ],
        "revision": 2,
        "measures": [
            {"measure": "ALERTS_SENT", "category": "IDENTITY_FRAUD", "count": 312},
            {"measure": "ALERTS_RECEIVED", "category": "SEXUAL_VIOLENCE", "suppressed_below": 5},
            {"measure": "QUARANTINED", "reason": "bad_signature", "count": 9},
        ],
    },
    MessageType.RETRACTION: {
        "retracted_message_id": "019ac9f2-6a00-7000-8000-000000000001",
        "reason": "CORRECTED",
        "note": "Wrong domain in the first indicator.",
        "superseded_by": "019ac9f2-6b00-7000-8000-000000000002",
    },
}


def payload_records() -> dict[str, dict[str, Any]]:
    """Avro records of the sample payloads, by record name."""
    return {mt.value: to_avro(parse_payload(mt, data, now=NOW)) for mt, data in PAYLOADS.items()}


def envelope_record(*, encrypted: bool = False) -> dict[str, Any]:
    """An Envelope record (plain body, or an encrypted body for two recipients)."""
    payload = codec.encode("OffenceAlert", payload_records()["OffenceAlert"])
    body: dict[str, Any] = {"payload": payload}
    recipients: list[str] = []
    if encrypted:
        recipients = ["DE", "NL"]
        body = {
            "ephemeral_public_key": bytes(range(32)),
            "nonce": bytes(range(12)),
            "ciphertext": b"\x5a" * (len(payload) + 16),
            "wrapped_keys": [
                {"recipient": r, "key_id": f"{i:016x}", "wrapped_key": bytes([i]) * 48}
                for i, r in enumerate(recipients, start=1)
            ],
            "key_commitment": bytes(range(32, 64)),
        }
    return {
        "message_id": MESSAGE_ID.bytes,
        "message_type": "OffenceAlert",
        "topic": "ncp.alerts.v1",
        "key": ALERT_ID,
        "sender": "FR",
        "created_at": NOW,
        "sequence": 7,
        "previous_hash": bytes(range(32)),
        "recipients": recipients,
        "handling": {
            "tlp": "AMBER_STRICT",
            "code": "H3",
            "restriction": "Not to be shared with private parties.",
            "source_reliability": "B",
            "information_reliability": "TWO",
        },
        "body": body,
    }


def trust_list_record() -> dict[str, Any]:
    """A TrustList record with two members and one revocation."""

    def key(i: int, until: datetime | None = None) -> dict[str, Any]:
        return {
            "key_id": f"{i:016x}",
            "public_key": bytes([i]) * 32,
            "valid_from": datetime(2026, 1, 1, tzinfo=UTC),
            "valid_until": until,
        }

    return {
        "federation": "ncp-test",
        "version": 3,
        "issued_at": NOW,
        "root_public_key": b"\x01" * 32,
        "members": [
            {
                "node_id": "FR",
                "name": "OCLCTIC / PHAROS",
                "signing_keys": [key(1, datetime(2027, 1, 1, tzinfo=UTC)), key(2)],
                "encryption_keys": [key(3)],
            },
            {"node_id": "DE", "name": "BKA", "signing_keys": [key(4)], "encryption_keys": []},
        ],
        "revocations": [
            {"key_id": f"{9:016x}", "revoked_at": NOW, "reason": "key file lost"},
        ],
        "pseudonym_keys": [
            {
                "key_id": "0123456789abcdef",
                "created_at": datetime(2026, 1, 1, tzinfo=UTC),
                "grace_until": None,
                "ephemeral_public_key": bytes([7]) * 32,
                "nonce": bytes([8]) * 12,
                "ciphertext": bytes([9]) * 48,
                "key_commitment": bytes([10]) * 32,
                "wrapped_keys": [
                    {"recipient": "FR", "key_id": f"{3:016x}", "wrapped_key": bytes([11]) * 48}
                ],
            }
        ],
    }


def all_records() -> dict[str, tuple[str, dict[str, Any]]]:
    """Vector name -> (schema name, record)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {
        name: (name, rec) for name, rec in payload_records().items()
    }
    out["Envelope"] = ("Envelope", envelope_record())
    out["Envelope-encrypted"] = ("Envelope", envelope_record(encrypted=True))
    out["TrustList"] = ("TrustList", trust_list_record())
    out["SignedEnvelope"] = (
        "SignedEnvelope",
        {
            "envelope": codec.encode("Envelope", envelope_record()),
            "signature": bytes(range(64)),
            "key_id": "0123456789abcdef",
        },
    )
    return out


def to_json(value: Any) -> Any:
    """Tagged JSON of an Avro record as fastavro reads it."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, datetime):
        return {"$timestamp_ms": int(value.timestamp() * 1000)}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    """The inverse of :func:`to_json`."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return bytes.fromhex(value["$bytes"])
        if set(value) == {"$timestamp_ms"}:
            return datetime.fromtimestamp(value["$timestamp_ms"] / 1000, tz=UTC)
        if set(value) == {"$date"}:
            return date.fromisoformat(value["$date"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def write_vectors() -> None:
    """Rewrite the golden vectors from the sample records."""
    for name, (schema, record) in all_records().items():
        data = codec.encode(schema, record)
        vector = {
            "schema": schema,
            "fingerprint": codec.REGISTRY.current(schema).fingerprint.hex(),
            "record": to_json(codec.decode(data)[1]),
            "hex": data.hex(),
        }
        path = VECTORS / f"{name}.json"
        path.write_text(json.dumps(vector, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_vectors()
