"""The test federation: keys, a signed trust list, node configs, sealed records, payloads.

    fed = make_federation(tmp_path)                 # FR, DE, NL; files as `federation init`
    sealed = fed.seal_alert("FR")                   # a valid OffenceAlert, chained per topic
    opened = fed.open(sealed, reader="DE")          # verify + decode as DE would
    fed.publish_trust(fed.trust.revoke(...))        # re-sign and rewrite trust.list
    fr = fed.member("FR")                           # a sending side with a chain of its own

The files are those ``exchange federation init`` writes (the same function) into the
directory: ``root.key``, ``root.pub``, ``trust.list`` and per node
``<NODE>/{signing,encryption}.{key,pub}`` and ``<NODE>/node.toml`` (test-tuned with
``tuned=True``: no HTTP listener, short poll and backoff intervals, JSON logs). Times default
to the federation's ``now``; keys are valid from one day before it unless ``valid_from``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from exchange import codec
from exchange.chain import ChainState, Link
from exchange.commands.federation import NodeFiles, init_federation
from exchange.envelope import Envelope, encode_envelope
from exchange.ids import KeyId, NodeId, Topic
from exchange.keys import SigningKey
from exchange.models import (
    Handling,
    InformationReliability,
    OffenceAlert,
    Payload,
    Retraction,
    SourceReliability,
    parse_payload,
    payload_type,
)
from exchange.seal import Opened, Sealed, Verified, open_record, seal, verify_record
from exchange.topics import HOME_TOPIC, MessageType, TopicKind, topic_name
from exchange.trust import KeyEntry, TrustList
from nodes.config import NodeConfig, load_config

#: The default "now" of a test federation.
NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)
#: The alerts topic under the default prefix.
ALERTS = topic_name(TopicKind.ALERTS, "ncp")


def handling(tlp: str = "GREEN", code: str = "H0", restriction: str | None = None) -> Handling:
    """A Handling record; GREEN / H0 / A / ONE by default."""
    return Handling.model_validate(
        {
            "tlp": tlp,
            "code": code,
            "restriction": restriction,
            "source_reliability": SourceReliability.A,
            "information_reliability": InformationReliability.ONE,
        }
    )


_handling = handling


def alert_data(
    title: str = "Fake web shop",
    category: str = "FRAUDULENT_SALES",
    *,
    observed_at: datetime | None = None,
    domain: str = "shop.example",
    description: str = "A web shop that takes payment and never delivers.",
) -> dict[str, Any]:
    """A valid OffenceAlert payload as local input, observed an hour before :data:`NOW`."""
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


_FILLER = (
    "Phishing shop impersonating a national parcel service; victims pay a customs fee by card "
    "and the card data is resold. The kit rotates domains every few hours. "
)


def alert_payload(
    index: int = 0, *, node: str = "FR", now: datetime = NOW, size: int = 1000
) -> dict[str, Any]:
    """A valid OffenceAlert payload of about ``size`` bytes once encoded."""
    description = (_FILLER * (size // len(_FILLER) + 1))[: max(60, size - 330)]
    return {
        "alert_id": str(uuid.uuid4()),
        "title": f"Fake parcel-service shop #{index}",
        "category": "FRAUDULENT_SALES",
        "observed_at": (now - timedelta(minutes=5)).isoformat(),
        "indicators": [
            {"type": "URL", "value": f"https://parcel-fee-{index}.example.com/pay"},
            {"type": "DOMAIN", "value": f"parcel-fee-{index}.example.com"},
            {"type": "IP_ADDRESS", "value": f"192.0.2.{index % 250 + 1}"},
        ],
        "description": description,
        "reporting_source": "LAW_ENFORCEMENT",
        "language": "en",
        "country_of_origin": node,
        "case_reference": f"{node}-{index:08d}",
    }


def make_alert(now: datetime = NOW) -> OffenceAlert:
    """A valid OffenceAlert of about 1 KB (see :func:`alert_payload`)."""
    alert = parse_payload(MessageType.OFFENCE_ALERT, alert_payload(now=now), now=now)
    assert isinstance(alert, OffenceAlert)
    return alert


def sample_payloads(now: datetime = NOW) -> dict[MessageType, Payload]:
    """One valid payload of every message type."""
    day = (now - timedelta(days=1)).date()
    data: dict[MessageType, dict[str, Any]] = {
        MessageType.OFFENCE_ALERT: alert_payload(now=now),
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
class Member:
    """One member's sending side (or a thief's, holding ``key``): its own chain per topic."""

    fed: Federation
    node_id: NodeId
    key: SigningKey
    chain: ChainState = field(default_factory=ChainState)

    def seal(
        self,
        payload: Payload,
        *,
        topic: Topic | None = None,
        handling: Handling | None = None,
        tlp: str = "GREEN",
        code: str = "H0",
        recipients: Sequence[str] = (),
        now: datetime | None = None,
        signer: SigningKey | None = None,
        key: str | None = None,
        link: Link | None = None,
        message_id: uuid.UUID | None = None,
        advance: bool = True,
    ) -> Sealed:
        """Seal ``payload`` with the next link on ``topic`` (or ``link``), then advance."""
        topic = topic or self.fed.home_topic(payload_type(payload))
        sealed = seal(
            payload,
            signer=signer or self.key,
            sender=self.node_id,
            topic=topic,
            link=link or self.chain.next(topic),
            handling=handling or _handling(tlp, code),
            recipients=[NodeId(r) for r in recipients],
            trust=self.fed.trust,
            now=now or self.fed.now,
            message_id=message_id,
            key=key,
        )
        if advance:
            self.chain.advance(topic, sealed.envelope_hash)
        return sealed

    def alert(self, now: datetime | None = None, **kw: Any) -> Sealed:
        """Seal a fresh alert (``title``, ``category``, ``domain``... as for
        :func:`alert_data`, observed an hour before ``now`` or the federation's ``now`` if
        earlier; other keywords as for :meth:`seal`).
        """
        now = now or self.fed.now
        fields = {k: kw.pop(k) for k in ("title", "category", "domain", "description") if k in kw}
        observed = kw.pop("observed_at", min(now, self.fed.now) - timedelta(hours=1))
        data = alert_data(observed_at=observed, **fields)
        return self.seal(parse_payload(MessageType.OFFENCE_ALERT, data, now=now), now=now, **kw)

    def retraction(self, retracted: Sealed, **kw: Any) -> Sealed:
        """Seal a Retraction of ``retracted``, under its key (keywords as for :meth:`seal`)."""
        payload = parse_payload(
            MessageType.RETRACTION,
            {"retracted_message_id": str(retracted.envelope.message_id), "reason": "WITHDRAWN"},
            now=kw.get("now") or self.fed.now,
        )
        assert isinstance(payload, Retraction)
        return self.seal(payload, key=retracted.envelope.key, **kw)

    def sign(self, envelope: Envelope) -> Sealed:
        """``envelope`` as it is, signed with this member's key (next in its chain)."""
        link = self.chain.next(envelope.topic)
        envelope = envelope._replace(
            sender=self.node_id, sequence=link.sequence, previous_hash=link.previous_hash
        )
        data = encode_envelope(envelope)
        value = codec.encode_signed(data, self.key.sign(data), self.key.key_id)
        sealed = Sealed(value, envelope.key.encode(), envelope, hashlib.sha256(data).digest())
        self.chain.advance(envelope.topic, sealed.envelope_hash)
        return sealed


@dataclass
class Federation:
    """A test federation: its keys, trust list, files, configs and one chain per sender."""

    directory: Path
    root: SigningKey
    trust: TrustList
    trust_bytes: bytes
    trust_path: Path
    root_public_path: Path
    nodes: dict[str, NodeFiles]  #: by node id
    now: datetime
    prefix: str
    bootstrap: str
    senders: dict[str, Member] = field(default_factory=dict)

    def topic(self, kind: TopicKind = TopicKind.ALERTS) -> Topic:
        """The full topic name with this federation's prefix."""
        return topic_name(kind, self.prefix)

    def home_topic(self, message_type: MessageType) -> Topic:
        """Where a message type travels (alerts for a Retraction)."""
        return self.topic(HOME_TOPIC.get(message_type, TopicKind.ALERTS))

    def signer(self, node: str) -> SigningKey:
        """``node``'s signing key."""
        return self.nodes[node].signing

    def config_path(self, node: str) -> Path:
        """``node``'s ``node.toml``."""
        return self.nodes[node].config

    def config(self, node: str) -> NodeConfig:
        """``node``'s loaded configuration."""
        return load_config(self.config_path(node))

    def db_path(self, node: str) -> Path:
        """``node``'s SQLite store (as its config names it)."""
        return self.nodes[node].directory / "node.db"

    def member(self, node: str, key: SigningKey | None = None) -> Member:
        """A new sending side of ``node`` with a chain of its own (its own key unless ``key``)."""
        return Member(self, NodeId(node), key or self.signer(node))

    def sender(self, node: str) -> Member:
        """``node``'s sending side in this federation, the one :meth:`seal` uses."""
        if node not in self.senders:
            self.senders[node] = self.member(node)
        return self.senders[node]

    def seal(self, payload: Payload, sender: str = "FR", **kw: Any) -> Sealed:
        """Seal ``payload`` as ``sender``, next in its chain (keywords as for Member.seal)."""
        if kw.get("key") is None and payload_type(payload) is MessageType.RETRACTION:
            kw["key"] = "retracted-key"
        return self.sender(sender).seal(payload, **kw)

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


#: Config tables every tuned test node gets (merged under the caller's overrides).
TEST_TABLES: dict[str, dict[str, Any]] = {
    "http": {"listen": ""},
    "publisher": {
        "batch_size": 1000,
        "backoff_initial_ms": 50,
        "backoff_max_ms": 1000,
        "poll_interval_ms": 50,
    },
    "consumer": {"max_records": 2000, "poll_timeout_ms": 200},
    "log": {"level": "info", "format": "json"},
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def render_toml(top: Mapping[str, Any], tables: Mapping[str, Mapping[str, Any]]) -> str:
    """A flat TOML document: ``top`` keys, then one ``[table]`` per entry of ``tables``."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for name, table in tables.items():
        lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def _write_tuned_configs(
    fed: Federation,
    tables: Mapping[str, Mapping[str, Any]],
    per_node: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> None:
    body: dict[str, dict[str, Any]] = {
        "keys": {
            "signing_key": "signing.key",
            "encryption_key": "encryption.key",
            "trust_list": "../trust.list",
            "root_public_key": "../root.pub",
        },
        "kafka": {"bootstrap_servers": fed.bootstrap, "topic_prefix": fed.prefix},
        "store": {"url": "sqlite:///node.db"},
        **{k: dict(v) for k, v in TEST_TABLES.items()},
    }
    for name, table in tables.items():
        body[name] = {**body.get(name, {}), **table}
    for node in fed.nodes:
        mine = dict(body)
        for name, table in per_node.get(node, {}).items():
            mine[name] = {**mine.get(name, {}), **table}
        fed.config_path(node).write_text(render_toml({"node_id": node}, mine), encoding="utf-8")


def make_federation(
    directory: Path,
    nodes: Sequence[str] = ("FR", "DE", "NL"),
    now: datetime = NOW,
    *,
    prefix: str = "ncp",
    bootstrap: str = "127.0.0.1:9092",
    federation: str = "test",
    valid_from: datetime | None = None,
    extra_keys: Mapping[str, SigningKey] | None = None,
    expired_keys: Mapping[str, SigningKey] | None = None,
    revoked: Mapping[KeyId, datetime] | None = None,
    tuned: bool = False,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
    per_node: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
) -> Federation:
    """A federation in ``directory``, keys valid from ``valid_from`` (a day before ``now``).

    ``extra_keys``: a further signing key per member, valid from ``valid_from``;
    ``expired_keys``: one valid for its first day only; ``revoked``: key id -> revocation
    time. ``tuned``: test-tuned node configs, their tables overridden by ``tables`` for every
    node and by ``per_node[node]`` for one.
    """
    start = valid_from or now - timedelta(days=1)
    files = init_federation(
        directory,
        tuple(nodes),
        federation=federation,
        bootstrap=bootstrap,
        prefix=prefix,
        now=start,
    )
    fed = Federation(
        directory=files.directory,
        root=files.root,
        trust=files.trust,
        trust_bytes=files.trust_bytes,
        trust_path=files.trust_path,
        root_public_path=files.root_public_path,
        nodes={str(k): v for k, v in files.nodes.items()},
        now=now,
        prefix=prefix,
        bootstrap=bootstrap,
    )
    trust = fed.trust
    windows: list[tuple[str, SigningKey, datetime | None]]
    windows = [(m, k, None) for m, k in (extra_keys or {}).items()]
    windows += [(m, k, start + timedelta(days=1)) for m, k in (expired_keys or {}).items()]
    for m, key, until in windows:
        member = trust.member(NodeId(m))
        entry = KeyEntry.for_key(key.public_bytes, start, until)
        trust = trust.with_member(
            dataclasses.replace(member, signing_keys=(*member.signing_keys, entry)),
            issued_at=start,
        )
    for key_id, at in (revoked or {}).items():
        trust = trust.revoke(key_id, at, "key compromised", issued_at=at)
    if trust is not fed.trust:
        fed.publish_trust(trust)
    if tuned or tables or per_node:
        _write_tuned_configs(fed, tables or {}, per_node or {})
    return fed
