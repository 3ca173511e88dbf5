"""A whole test federation in one call: keys, a signed trust list, files, sealed records.

    fed = make_federation(tmp_path)                 # FR, DE, NL; files as `federation init`
    sealed = fed.seal_alert("FR")                   # a valid OffenceAlert, chained per topic
    opened = fed.open(sealed, reader="DE")          # verify + decode as DE would
    fed.publish_trust(fed.trust.revoke(...))        # re-sign and rewrite trust.list

The files are those ``exchange federation init`` writes (the same function):
``root.key``, ``root.pub``, ``trust.list`` and per node ``<NODE>/{signing,encryption}.{key,pub}``
and ``<NODE>/node.toml``. Times default to the federation's ``now``; keys are valid
from one day before it. ``sample_payloads(now)`` gives a valid payload of every type.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from exchange.chain import ChainState
from exchange.commands.federation import NodeFiles, init_federation
from exchange.ids import NodeId, Topic
from exchange.keys import SigningKey
from exchange.models import (
    Handling,
    HandlingCode,
    InformationReliability,
    OffenceAlert,
    Payload,
    SourceReliability,
    Tlp,
    parse_payload,
    payload_type,
)
from exchange.seal import Opened, Sealed, Verified, open_record, seal, verify_record
from exchange.topics import HOME_TOPIC, MessageType, TopicKind, topic_name
from exchange.trust import TrustList

__all__ = [
    "NOW",
    "Federation",
    "alert_data",
    "handling",
    "make_alert",
    "make_federation",
    "sample_payloads",
]

#: The default "now" of a test federation.
NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


def handling(
    tlp: Tlp = Tlp.GREEN, code: HandlingCode = HandlingCode.H0, restriction: str | None = None
) -> Handling:
    """A Handling record; GREEN / H0 / A / ONE by default."""
    return Handling(
        tlp=tlp,
        code=code,
        restriction=restriction,
        source_reliability=SourceReliability.A,
        information_reliability=InformationReliability.ONE,
    )


def alert_data(
    now: datetime, *, alert_id: uuid.UUID | None = None, indicators: int = 3
) -> dict[str, Any]:
    """JSON-like input for a valid OffenceAlert (about 1 KB encoded with the defaults)."""
    return {
        "alert_id": str(alert_id or uuid.uuid4()),
        "title": "Phishing kit impersonating a national bank",
        "category": "FRAUDULENT_SALES",
        "observed_at": (now - timedelta(hours=2)).isoformat(),
        "indicators": [
            {"type": "URL", "value": f"https://login-bank{i}.example.com/secure/verify?id={i}"}
            for i in range(indicators)
        ]
        + [{"type": "DOMAIN", "value": "login-bank.example.com"}],
        "description": (
            "A phishing kit collecting online-banking credentials and one-time codes, hosted "
            "on several look-alike domains and advertised through SMS messages to customers. "
        )
        * 4,
        "reporting_source": "HOTLINE",
        "language": "fr",
        "country_of_origin": "FR",
        "case_reference": "FR-2026-000123",
    }


default_handling = handling


def make_alert(now: datetime = NOW, **kw: Any) -> OffenceAlert:
    """A valid OffenceAlert (see :func:`alert_data`)."""
    alert = parse_payload(MessageType.OFFENCE_ALERT, alert_data(now, **kw), now=now)
    assert isinstance(alert, OffenceAlert)
    return alert


def sample_payloads(now: datetime = NOW) -> dict[MessageType, Payload]:
    """One valid payload of every message type."""
    day = (now - timedelta(days=1)).date()
    data: dict[MessageType, dict[str, Any]] = {
        MessageType.OFFENCE_ALERT: alert_data(now),
        MessageType.BLACKLIST_DELTA: {
            "list_id": "csam-urls",
            "base_version": 4,
            "version": 5,
            "added": [
                {
                    "kind": "URL",
                    "value": "https://bad.example.org/x",
                    "category": "CHILD_SEXUAL_ABUSE_MATERIAL",
                    "added_at": (now - timedelta(minutes=5)).isoformat(),
                }
            ],
            "removed": [{"kind": "DOMAIN", "value": "old.example.net"}],
            "reason": "weekly review",
        },
        MessageType.PSEUDONYM_QUERY: {
            "query_id": str(uuid.uuid4()),
            "pseudonym": "darkseller42",
            "platform": "ExampleForum",
            "category": "ILLICIT_DRUG_TRADE",
            "justification": "Investigation 2026/123 into a drug marketplace vendor.",
            "requested_detail": "HIT_ONLY",
        },
        MessageType.PSEUDONYM_RESPONSE: {
            "query_id": str(uuid.uuid4()),
            "in_reply_to": str(uuid.uuid4()),
            "hit": True,
            "details": "Known since 2025 in case DE-77.",
            "case_reference": "DE-77",
        },
        MessageType.STATISTICAL_INDICATOR: {
            "country": "FR",
            "period_start": (day - timedelta(days=6)).isoformat(),
            "period_end": day.isoformat(),
            "counts": [
                {"category": "IDENTITY_THEFT", "count": 12},
                {"category": "OTHER", "count": 3},
            ],
        },
        MessageType.RETRACTION: {
            "retracted_message_id": str(uuid.uuid4()),
            "reason": "WITHDRAWN",
            "note": "Sent by mistake.",
        },
    }
    return {mt: parse_payload(mt, d, now=now) for mt, d in data.items()}


@dataclass
class Federation:
    """A test federation: its keys, trust list, files, and one hash chain per sender."""

    directory: Path
    root: SigningKey
    trust: TrustList
    trust_bytes: bytes
    trust_path: Path
    root_public_path: Path
    nodes: dict[str, NodeFiles]  #: by node id
    now: datetime
    prefix: str
    chains: dict[str, ChainState] = field(default_factory=dict)

    def topic(self, kind: TopicKind = TopicKind.ALERTS) -> Topic:
        """The full topic name with this federation's prefix."""
        return topic_name(kind, self.prefix)

    def home_topic(self, message_type: MessageType) -> Topic:
        """Where a message type travels (alerts for a Retraction)."""
        return self.topic(HOME_TOPIC.get(message_type, TopicKind.ALERTS))

    def seal(
        self,
        payload: Payload,
        sender: str = "FR",
        *,
        topic: Topic | None = None,
        handling: Handling | None = None,
        recipients: Sequence[str] = (),
        now: datetime | None = None,
        signer: SigningKey | None = None,
        key: str | None = None,
        advance: bool = True,
    ) -> Sealed:
        """Seal ``payload`` as ``sender`` (its own key unless ``signer``), next in its chain."""
        node = NodeId(sender)
        topic = topic or self.home_topic(payload_type(payload))
        chain = self.chains.setdefault(node, ChainState())
        if key is None and payload_type(payload) is MessageType.RETRACTION:
            key = "retracted-key"
        sealed = seal(
            payload,
            signer=signer or self.nodes[node].signing,
            sender=node,
            topic=topic,
            link=chain.next(topic),
            handling=handling or default_handling(),
            recipients=[NodeId(r) for r in recipients],
            trust=self.trust,
            now=now or self.now,
            key=key,
        )
        if advance:
            chain.advance(topic, sealed.envelope_hash)
        return sealed

    def seal_alert(self, sender: str = "FR", **kw: Any) -> Sealed:
        """Seal a fresh valid OffenceAlert (keyword arguments as for :meth:`seal`)."""
        return self.seal(make_alert(kw.get("now") or self.now), sender, **kw)

    def verify(
        self,
        sealed: Sealed,
        *,
        value: bytes | None = None,
        topic: str | None = None,
        key: bytes | None = None,
        now: datetime | None = None,
    ) -> Verified:
        """verify_record as a receiver would, on the topic and key the record was sealed for."""
        return verify_record(
            sealed.value if value is None else value,
            topic=topic or sealed.envelope.topic,
            key=sealed.key if key is None else key,
            trust=self.trust,
            now=now or self.now,
        )

    def open(self, sealed: Sealed, reader: str = "DE", *, now: datetime | None = None) -> Opened:
        """open_record as node ``reader`` would."""
        node = NodeId(reader)
        return open_record(
            sealed.value,
            topic=sealed.envelope.topic,
            key=sealed.key,
            trust=self.trust,
            now=now or self.now,
            reader=node,
            decryption_key=self.nodes[node].encryption if node in self.nodes else None,
        )

    def publish_trust(self, trust: TrustList) -> None:
        """Adopt a new trust list: re-sign it with the root key and rewrite trust.list."""
        self.trust = trust
        self.trust_bytes = trust.sign(self.root)
        self.trust_path.write_bytes(self.trust_bytes)


def make_federation(
    tmp_path: Path,
    nodes: Sequence[str] = ("FR", "DE", "NL"),
    now: datetime = NOW,
    *,
    prefix: str = "ncp",
    federation: str = "test",
    bootstrap: str = "127.0.0.1:9092",
    valid_from: datetime | None = None,
) -> Federation:
    """A federation under ``tmp_path / "federation"``; keys valid from ``valid_from``.

    ``valid_from`` defaults to one day before ``now``.
    """
    start = valid_from or now - timedelta(days=1)
    files = init_federation(
        tmp_path / "federation",
        tuple(nodes),
        federation=federation,
        bootstrap=bootstrap,
        prefix=prefix,
        now=start,
    )
    return Federation(
        directory=files.directory,
        root=files.root,
        trust=files.trust,
        trust_bytes=files.trust_bytes,
        trust_path=files.trust_path,
        root_public_path=files.root_public_path,
        nodes={str(k): v for k, v in files.nodes.items()},
        now=now,
        prefix=prefix,
    )
