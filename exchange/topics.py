"""Topic names and which message types each topic carries.

| topic                | messages                                   | record key       |
|----------------------|--------------------------------------------|------------------|
| {prefix}.alerts.v1     | OffenceAlert, Retraction                   | alert id         |
| {prefix}.blacklist.v1  | BlacklistDelta, Retraction                 | list id          |
| {prefix}.pseudonyms.v1 | PseudonymQuery, PseudonymResponse, Retraction | query id      |
| {prefix}.indicators.v1 | StatisticalIndicator, Retraction           | sender+period    |
"""

from __future__ import annotations

from enum import StrEnum

from exchange.ids import Topic

DEFAULT_PREFIX = "ncp"


class MessageType(StrEnum):
    """The message types of the federation; values equal the Avro record names."""

    OFFENCE_ALERT = "OffenceAlert"
    BLACKLIST_DELTA = "BlacklistDelta"
    PSEUDONYM_QUERY = "PseudonymQuery"
    PSEUDONYM_RESPONSE = "PseudonymResponse"
    STATISTICAL_INDICATOR = "StatisticalIndicator"
    RETRACTION = "Retraction"


class TopicKind(StrEnum):
    """The four federation topics, without prefix and version."""

    ALERTS = "alerts"
    BLACKLIST = "blacklist"
    PSEUDONYMS = "pseudonyms"
    INDICATORS = "indicators"


TOPIC_VERSION = "v1"

ALLOWED_TYPES: dict[TopicKind, frozenset[MessageType]] = {
    TopicKind.ALERTS: frozenset({MessageType.OFFENCE_ALERT, MessageType.RETRACTION}),
    TopicKind.BLACKLIST: frozenset({MessageType.BLACKLIST_DELTA, MessageType.RETRACTION}),
    TopicKind.PSEUDONYMS: frozenset(
        {MessageType.PSEUDONYM_QUERY, MessageType.PSEUDONYM_RESPONSE, MessageType.RETRACTION}
    ),
    TopicKind.INDICATORS: frozenset({MessageType.STATISTICAL_INDICATOR, MessageType.RETRACTION}),
}

HOME_TOPIC: dict[MessageType, TopicKind] = {
    MessageType.OFFENCE_ALERT: TopicKind.ALERTS,
    MessageType.BLACKLIST_DELTA: TopicKind.BLACKLIST,
    MessageType.PSEUDONYM_QUERY: TopicKind.PSEUDONYMS,
    MessageType.PSEUDONYM_RESPONSE: TopicKind.PSEUDONYMS,
    MessageType.STATISTICAL_INDICATOR: TopicKind.INDICATORS,
}


def topic_name(kind: TopicKind, prefix: str = DEFAULT_PREFIX) -> Topic:
    """The full topic name, e.g. ``topic_name(TopicKind.ALERTS) == "ncp.alerts.v1"``."""
    return Topic(f"{prefix}.{kind.value}.{TOPIC_VERSION}")


def trust_topic(prefix: str = DEFAULT_PREFIX) -> Topic:
    """``<prefix>.trust.v1``: the operator's signed trust lists (compacted; not a data topic)."""
    return Topic(f"{prefix}.trust.{TOPIC_VERSION}")


def topic_kind(topic: Topic | str, prefix: str = DEFAULT_PREFIX) -> TopicKind | None:
    """The kind of a full topic name, or None when it is not a federation topic."""
    head = f"{prefix}."
    tail = f".{TOPIC_VERSION}"
    if not (topic.startswith(head) and topic.endswith(tail)):
        return None
    try:
        return TopicKind(topic[len(head) : -len(tail)])
    except ValueError:
        return None


def allowed_on(topic: Topic | str, message_type: MessageType, prefix: str = DEFAULT_PREFIX) -> bool:
    """Whether ``message_type`` may travel on ``topic``."""
    kind = topic_kind(topic, prefix)
    return kind is not None and message_type in ALLOWED_TYPES[kind]
