"""Fixtures for the node tests: a real three-member federation (FR, DE, NL) on disk, and
helpers that build alert payloads and sealed records the way a member would send them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from exchange.chain import Link
from exchange.commands.federation import FederationFiles, init_federation
from exchange.ids import NodeId, Topic
from exchange.keys import SigningKey
from exchange.models import Handling, OffenceAlert, Retraction, parse_payload
from exchange.seal import Sealed, seal
from exchange.topics import MessageType, TopicKind, topic_name
from exchange.trust import TrustList
from tests.helpers.broker import unique_prefix

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PREFIX = "ncp"
ALERTS = topic_name(TopicKind.ALERTS, PREFIX)


def alert_data(
    title: str = "Fake web shop",
    category: str = "FRAUDULENT_SALES",
    *,
    observed_at: datetime | None = None,
    domain: str = "shop.example",
    description: str = "A web shop that takes payment and never delivers.",
) -> dict[str, Any]:
    """A valid OffenceAlert payload as local input."""
    return {
        "alert_id": str(uuid.uuid4()),
        "title": title,
        "category": category,
        "observed_at": (observed_at or NOW - timedelta(hours=1)).isoformat(),
        "indicators": [{"type": "DOMAIN", "value": domain}],
        "description": description,
        "reporting_source": "HOTLINE",
        "language": "fr",
        "country_of_origin": "FR",
        "case_reference": "FR-2026-0001",
    }


def handling(tlp: str = "GREEN", code: str = "H0") -> Handling:
    return Handling.model_validate(
        {"tlp": tlp, "code": code, "source_reliability": "B", "information_reliability": "TWO"}
    )


@dataclass
class Federation:
    """A federation written by ``init_federation`` into a temporary folder."""

    files: FederationFiles
    prefix: str

    @property
    def trust(self) -> TrustList:
        return self.files.trust

    def signer(self, node: str) -> SigningKey:
        return self.files.nodes[NodeId(node)].signing

    def config_path(self, node: str) -> Path:
        return self.files.nodes[NodeId(node)].config

    def topic(self, kind: TopicKind = TopicKind.ALERTS) -> Topic:
        return topic_name(kind, self.prefix)


class Sender:
    """One member's sending side, keeping its chain per topic."""

    def __init__(self, fed: Federation, node: str) -> None:
        self.fed = fed
        self.node = NodeId(node)
        self.links: dict[str, tuple[int, bytes]] = {}

    def seal(
        self,
        payload: OffenceAlert | Retraction,
        *,
        tlp: str = "GREEN",
        code: str = "H0",
        recipients: Sequence[str] = (),
        topic: Topic | None = None,
        now: datetime = NOW,
        key: str | None = None,
    ) -> Sealed:
        topic = topic or self.fed.topic()
        last = self.links.get(topic)
        link = Link(1, None) if last is None else Link(last[0] + 1, last[1])
        sealed = seal(
            payload,
            signer=self.fed.signer(self.node),
            sender=self.node,
            topic=topic,
            link=link,
            handling=handling(tlp, code),
            recipients=[NodeId(r) for r in recipients],
            trust=self.fed.trust,
            now=now,
            key=key,
        )
        self.links[topic] = (link.sequence, sealed.envelope_hash)
        return sealed

    def alert(self, **kwargs: Any) -> tuple[OffenceAlert, Sealed]:
        seal_args = {k: kwargs.pop(k) for k in ("tlp", "code", "recipients", "now") if k in kwargs}
        alert = parse_payload(MessageType.OFFENCE_ALERT, alert_data(**kwargs), now=NOW)
        assert isinstance(alert, OffenceAlert)
        return alert, self.seal(alert, **seal_args)

    def retraction(self, retracted: Sealed, **kwargs: Any) -> Sealed:
        payload = parse_payload(
            MessageType.RETRACTION,
            {"retracted_message_id": str(retracted.envelope.message_id), "reason": "WITHDRAWN"},
            now=NOW,
        )
        assert isinstance(payload, Retraction)
        return self.seal(payload, key=retracted.envelope.key, **kwargs)


def make_federation(directory: Path, prefix: str, bootstrap: str = "127.0.0.1:9092") -> Federation:
    files = init_federation(
        directory,
        ["FR", "DE", "NL"],
        prefix=prefix,
        bootstrap=bootstrap,
        now=NOW - timedelta(days=30),
    )
    return Federation(files, prefix)


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    """FR, DE and NL with keys valid since 30 days before NOW, topic prefix ``ncp``."""
    return make_federation(tmp_path_factory.mktemp("federation"), PREFIX)


@pytest.fixture
def live_federation(tmp_path: Path, kafka_bootstrap: str) -> Federation:
    """A fresh federation for one integration test: its own folder, stores and topic prefix."""
    return make_federation(tmp_path / "fed", unique_prefix(), kafka_bootstrap)
