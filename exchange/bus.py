"""The one place that configures aiokafka for the protocol side.

The settings and client arguments are in :mod:`exchange.bus_settings` (re-exported here);
this module holds the clients' error translation and the topics (creating them, the trust
topic).

:class:`KafkaSettings` says how to reach the federation's cluster (plaintext, TLS,
SASL/PLAIN or SCRAM, with or without TLS); :func:`producer_kwargs` and
:func:`consumer_kwargs` turn it into keyword arguments for ``AIOKafkaProducer`` and
``AIOKafkaConsumer``: an idempotent producer with ``acks="all"`` and large batches
(1 MB batches produce about three times faster than aiokafka's 16 KB default), a
consumer that never commits on its own (nodes store offsets with the records).
:func:`ensure_topics` creates missing topics. :func:`kafka_errors` turns any aiokafka
or network error into an :class:`~exchange.errors.ExchangeError`, so none leaks.
Every client is started through :func:`started` (``async with started(client) as c:``)
or, when it outlives the block, :func:`start_or_close` (both from
:mod:`exchange.bus_lifecycle`): no start that fails or is cancelled leaves it open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    RequestTimedOutError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)
from aiokafka.structs import TopicPartition

from exchange import authguard, bus_lifecycle, fetchguard
from exchange.bus_lifecycle import STOP_GRACE_S, start_or_close, started, stop_quietly
from exchange.bus_settings import (
    KafkaSettings,
    SaslMechanism,
    SecurityProtocol,
    TopicCompression,
    admin_kwargs,
    consumer_kwargs,
    load_settings,
    producer_kwargs,
    sasl_password,
    ssl_context,
)
from exchange.errors import (
    AuthenticationError,
    ExchangeError,
    InputError,
    Reason,
    TransientError,
)
from exchange.topics import DEFAULT_PREFIX, TopicKind, topic_name, trust_topic

__all__ = [
    "STOP_GRACE_S",
    "TOPIC_CONFIGS",
    "TRUST_TOPIC_CONFIGS",
    "KafkaSettings",
    "SaslMechanism",
    "SecurityProtocol",
    "TopicCompression",
    "admin_kwargs",
    "consumer_kwargs",
    "ensure_topics",
    "federation_topics",
    "kafka_errors",
    "load_settings",
    "producer_kwargs",
    "publish_trust_list",
    "read_trust_lists",
    "sasl_password",
    "ssl_context",
    "start_or_close",
    "started",
    "stop_quietly",
    "timestamp_types",
    "translate",
    "trust_record_key",
]

# Every consumer this process makes turns a batch it cannot read into one marked record
# instead of an error that stalls the partition (see exchange.fetchguard).
fetchguard.install()
# Every start of a client through started()/start_or_close() closes what it opened when it
# fails or is cancelled, aiokafka's bootstrap connection included (see exchange.bus_lifecycle).
bus_lifecycle.install()
# ... and reports credentials the cluster refuses as refused, not as an unreachable cluster
# (see exchange.authguard).
authguard.install()


# --- errors --------------------------------------------------------------------------------

_NOT_TRANSIENT: tuple[type[KafkaError], ...] = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)


def translate(exc: BaseException, action: str) -> ExchangeError:
    """The :class:`ExchangeError` for an aiokafka or network error met while doing ``action``.

    Refused credentials are an :class:`AuthenticationError` and authorisation failures
    an error with reason ``BAD_CONFIG``: configuration errors, not retried (waiting will
    not fix a wrong password or a missing ACL). Everything else (connection lost,
    timeouts, leader elections, broker errors) is a :class:`TransientError` the caller
    retries. aiokafka's bootstrap reports refused credentials as an unreachable cluster;
    :mod:`exchange.authguard` (installed on import) makes it raise the refusal.
    """
    if isinstance(exc, ExchangeError):
        return exc
    name = type(exc).__name__
    if isinstance(exc, authguard.REFUSALS):
        return AuthenticationError(
            f"{action}: the Kafka cluster refused the credentials (check kafka.sasl_username, "
            f"kafka.sasl_password or sasl_password_file, kafka.sasl_mechanism): {exc}"
        )
    if isinstance(exc, _NOT_TRANSIENT):
        return ExchangeError(Reason.BAD_CONFIG, f"{action}: {name}: {exc}", field="kafka")
    return TransientError(f"{action}: {name}: {exc}")


@contextmanager
def kafka_errors(action: str) -> Iterator[None]:
    """Re-raise aiokafka, network and timeout errors inside the block via :func:`translate`."""
    try:
        yield
    except (KafkaError, OSError, TimeoutError) as exc:
        raise translate(exc, action) from exc


# --- topics --------------------------------------------------------------------------------

#: Every topic ensure_topics creates: the broker stamps each record with its own clock
#: (the federation's time; a sender cannot choose it), which receivers and the auditor
#: judge keys and ``created_at`` against.
TOPIC_CONFIGS: Mapping[str, str] = {"message.timestamp.type": "LogAppendTime"}


def federation_topics(prefix: str = DEFAULT_PREFIX, partitions: int = 3) -> dict[str, int]:
    """The four federation topics with their partition counts (blacklist: 1, ordered per list)."""
    return {
        topic_name(kind, prefix): 1 if kind is TopicKind.BLACKLIST else partitions
        for kind in TopicKind
    }


async def ensure_topics(
    s: KafkaSettings,
    topics: Mapping[str, int] | str,
    partitions: int = 3,
    configs: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    ``topics`` maps names to partition counts, or is a prefix meaning
    :func:`federation_topics` ``(prefix, partitions)``. Idempotent: topics that exist
    (or that another node creates meanwhile) are left as they are. Raises
    :class:`TransientError` when the cluster cannot be reached.
    """
    wanted = federation_topics(topics, partitions) if isinstance(topics, str) else dict(topics)
    for name, count in wanted.items():
        if count < 1:
            raise InputError([(f"topics.{name}", f"partitions must be >= 1, got {count}")])
    with kafka_errors("creating topics"):
        async with started(AIOKafkaAdminClient(**admin_kwargs(s))) as admin:
            existing = set(await admin.list_topics())
            missing = [name for name in wanted if name not in existing]
            if not missing:
                return []
            response = await admin.create_topics(
                [
                    NewTopic(
                        n,
                        wanted[n],
                        s.topic_replication_factor,
                        topic_configs={
                            **TOPIC_CONFIGS,
                            "compression.type": s.topic_compression_type.value,
                            **(configs or {}),
                        },
                    )
                    for n in missing
                ],
                timeout_ms=s.request_timeout_ms,
            )
            created: list[str] = []
            for entry in response.topic_errors:
                name, code = entry[0], entry[1]
                if code == 0 or code == RequestTimedOutError.errno:
                    # timed out: the controller goes on creating it; wait until it is served
                    created.append(name)
                elif code != TopicAlreadyExistsError.errno:
                    error = for_code(code)
                    message = entry[2] if len(entry) > 2 and entry[2] else error.description
                    detail = f"creating topic {name}: {error.__name__}: {message}"
                    if error.retriable:
                        raise TransientError(detail)
                    raise ExchangeError(Reason.BAD_CONFIG, detail, field=f"topics.{name}")
            await _until_served(admin, {n: wanted[n] for n in created}, s.request_timeout_ms)
        return created


#: The trust topic: compacted (never deleted by age), one record per version (its key
#: ``<federation>/<version, 10 digits>``), so it keeps every list ever published: nodes
#: take the highest, the auditor each one from its append time.
TRUST_TOPIC_CONFIGS: Mapping[str, str] = {"cleanup.policy": "compact"}


def trust_record_key(federation: str, version: int) -> bytes:
    """The record key of a trust list on the trust topic."""
    return f"{federation}/{version:010d}".encode()


async def publish_trust_list(
    s: KafkaSettings, prefix: str, federation: str, version: int, signed: bytes
) -> tuple[int, int]:
    """Write a signed trust list to ``<prefix>.trust.v1`` (created if missing); its
    (offset, append time ms). The caller has verified the list."""
    topic = trust_topic(prefix)
    for attempt in range(3):  # an operator's one-off command: a slow broker is worth a retry
        try:
            await ensure_topics(s, {topic: 1}, configs=TRUST_TOPIC_CONFIGS)
            break
        except TransientError:
            if attempt == 2:
                raise
            await asyncio.sleep(1.0 + attempt)
    with kafka_errors("publishing the trust list"):
        async with started(AIOKafkaProducer(**producer_kwargs(s))) as producer:
            meta = await producer.send_and_wait(
                topic, signed, key=trust_record_key(federation, version), partition=0
            )
    return meta.offset, meta.timestamp


async def read_trust_lists(
    s: KafkaSettings, prefix: str, timeout_s: float = 30.0
) -> list[tuple[int, bytes]]:
    """Every record on ``<prefix>.trust.v1`` as (append time ms, signed bytes), in log order;
    [] when the topic does not exist. Joins no group and commits nothing."""
    topic = trust_topic(prefix)
    out: list[tuple[int, bytes]] = []
    with kafka_errors("reading the trust topic"):
        async with started(AIOKafkaConsumer(**consumer_kwargs(s))) as consumer:
            if topic not in await consumer.topics():
                return []
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            async with asyncio.timeout(timeout_s):
                while await consumer.position(tp) < end:
                    batch = await consumer.getmany(tp, timeout_ms=500)
                    for record in batch.get(tp, []):
                        if record.value is not None:
                            out.append((record.timestamp, record.value))
    return out


async def timestamp_types(s: KafkaSettings, topics: Sequence[str]) -> dict[str, str]:
    """``message.timestamp.type`` of each of ``topics`` that exists (LogAppendTime or
    CreateTime): whether its record times are the broker's or the producers'."""
    found: dict[str, str] = {}
    with kafka_errors("describing topics"):
        async with started(AIOKafkaAdminClient(**admin_kwargs(s))) as admin:
            existing = set(await admin.list_topics())
            wanted = [t for t in topics if t in existing]
            if not wanted:
                return found
            resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in wanted]
            for response in await admin.describe_configs(resources):
                for resource in response.resources:
                    if resource[0] != 0:
                        continue
                    for entry in resource[4]:
                        if entry[0] == "message.timestamp.type":
                            found[resource[3]] = entry[1]
    return found


async def _until_served(
    admin: AIOKafkaAdminClient, topics: Mapping[str, int], timeout_ms: int
) -> None:
    """Wait until the broker's metadata shows every partition of ``topics``.

    CreateTopics answers once the controller has the topic; the brokers' metadata follows
    a moment later (seen on a freshly formatted broker: a topic described right after its
    creation had no partitions yet). Callers rely on topics being usable on return.
    """
    deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
    pending = dict(topics)
    while pending:
        described = await admin.describe_topics(list(pending))
        for topic in described:
            if topic["error_code"] == 0 and len(topic["partitions"]) >= pending[topic["topic"]]:
                pending.pop(topic["topic"], None)
        if not pending:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TransientError(f"topics created but not yet served: {sorted(pending)}")
        await asyncio.sleep(0.05)
