"""Shared test data for the connector tests: stored alerts as a connector receives them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from stix2validator import ValidationOptions, validate_instance

from connectors.api import SharedRecord
from exchange.models import parse_payload
from exchange.topics import MessageType

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)

EVERY_INDICATOR: list[dict[str, Any]] = [
    {"type": "URL", "value": "https://parcel-fee.example.com/pay?id='x'"},
    {"type": "DOMAIN", "value": "parcel-fee.example.com"},
    {"type": "IP_ADDRESS", "value": "192.0.2.7"},
    {"type": "IP_ADDRESS", "value": "2001:db8::7"},
    {"type": "EMAIL", "value": "refunds@parcel-fee.example.com"},
    {"type": "FILE_HASH", "hash_algorithm": "SHA256", "value": "a" * 64},
    {"type": "FILE_HASH", "hash_algorithm": "MD5", "value": "b" * 32},
    {
        "type": "CRYPTO_WALLET",
        "currency": "BTC",
        "value": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
    },
    {"type": "ONLINE_HANDLE", "platform": "Telegram", "value": "@parcel_fee_support"},
]


def payload(indicators: list[dict[str, Any]] | None = None, **over: Any) -> dict[str, Any]:
    """A valid OffenceAlert payload (JSON form, as a connector receives it)."""
    data: dict[str, Any] = {
        "alert_id": str(uuid.uuid4()),
        "title": "Fake parcel-service shop",
        "category": "FRAUDULENT_SALES",
        "observed_at": (NOW - timedelta(hours=1)).isoformat(),
        "indicators": indicators or EVERY_INDICATOR,
        "description": "Victims pay a customs fee by card; the card data is resold.",
        "reporting_source": "HOTLINE",
        "language": "fr",
        "country_of_origin": "FR",
        "case_reference": "FR-2026-0001",
    }
    data.update(over)
    model = parse_payload(MessageType.OFFENCE_ALERT, data, now=NOW)
    return model.model_dump(mode="json")


def record(
    data: dict[str, Any] | None = None, *, tlp: str = "AMBER", code: str = "H1", sender: str = "FR"
) -> SharedRecord:
    """A stored alert as the node hands it to an outbound connector."""
    return SharedRecord(
        message_id=uuid.uuid4(),
        topic="ncp.alerts.v1",
        message_type="OffenceAlert",
        sender=sender,
        created_at=NOW - timedelta(minutes=30),
        received_at=NOW - timedelta(minutes=29),
        category=(data or {}).get("category", "FRAUDULENT_SALES"),
        tlp=tlp,
        handling_code=code,
        recipients=(),
        payload=data or payload(),
    )


def assert_valid_stix(bundle: dict[str, Any]) -> None:
    """The OASIS validator finds no error in ``bundle`` (warnings are listed on failure)."""
    results = validate_instance(bundle, ValidationOptions(version="2.1"))
    errors = [str(e) for e in results.errors or ()]
    assert results.is_valid, errors


def normal(data: dict[str, Any]) -> dict[str, Any]:
    """An alert payload validated and dumped as the node stores it (for comparisons)."""
    return parse_payload(MessageType.OFFENCE_ALERT, data, now=NOW).model_dump(mode="json")
