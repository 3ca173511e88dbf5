"""exchange.bus against the real broker: topics created once, records flow with its settings."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from exchange.bus import (
    KafkaSettings,
    TopicCompression,
    admin_kwargs,
    consumer_kwargs,
    ensure_topics,
    federation_topics,
    producer_kwargs,
)
from exchange.errors import TransientError
from tests.helpers.broker import unique_topic

pytestmark = pytest.mark.integration


async def _partitions(settings: KafkaSettings, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(**admin_kwargs(settings))
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described}


async def test_ensure_topics_creates_missing_topics_once(kafka_settings: KafkaSettings) -> None:
    """Missing topics are created with their partition counts; a second call creates nothing."""
    wanted = {unique_topic("a"): 3, unique_topic("b"): 1}
    assert sorted(await ensure_topics(kafka_settings, wanted)) == sorted(wanted)
    assert await _partitions(kafka_settings, list(wanted)) == wanted
    assert await ensure_topics(kafka_settings, wanted) == []


async def test_ensure_topics_by_prefix_creates_the_federation_topics(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    """A prefix stands for the four federation topics, the blacklist with one partition."""
    await ensure_topics(kafka_settings, topic_prefix, partitions=2)
    expected = federation_topics(topic_prefix, 2)
    assert await _partitions(kafka_settings, list(expected)) == expected


async def test_producer_and_consumer_kwargs_work_against_the_broker(
    kafka_settings: KafkaSettings,
) -> None:
    """A producer and a consumer built from the settings exchange a record."""
    topic = unique_topic("kw")
    await ensure_topics(kafka_settings, {topic: 1})
    producer = AIOKafkaProducer(**producer_kwargs(kafka_settings))
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"v", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, **consumer_kwargs(kafka_settings))
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"k", b"v")


async def test_unreachable_cluster_is_a_transient_error() -> None:
    """With no broker listening, ensure_topics raises TransientError, not an aiokafka error."""
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", request_timeout_ms=2_000)
    with pytest.raises(TransientError):
        await ensure_topics(settings, {unique_topic(): 1})


async def _topic_configs(settings: KafkaSettings, name: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(**admin_kwargs(settings))
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    finally:
        await admin.close()
    [(_code, _message, _type, _name, entries)] = response.resources
    return {entry[0]: entry[1] for entry in entries}


@pytest.mark.parametrize("compression", ["producer", "zstd"])
async def test_topics_are_created_with_the_broker_clock_and_the_chosen_compression(
    kafka_settings: KafkaSettings, compression: str
) -> None:
    """Created topics carry message.timestamp.type=LogAppendTime and the compression.type
    of the settings, as the broker reports them."""
    settings = kafka_settings.model_copy(
        update={"topic_compression_type": TopicCompression(compression)}
    )
    topic = unique_topic("c")
    await ensure_topics(settings, {topic: 1})
    configs = await _topic_configs(settings, topic)
    assert configs["message.timestamp.type"] == "LogAppendTime"
    assert configs["compression.type"] == compression
