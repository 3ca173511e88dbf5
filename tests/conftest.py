"""Fixtures shared by every test.

``kafka_bootstrap`` is the one way a test gets a Kafka broker ("host:port"). It is
session-scoped and lazy: a run of unit tests only never asks for it and starts
nothing. Where the broker comes from (``KAFKA_BOOTSTRAP_SERVERS``, testcontainers, the
local ``deploy/kafka/kafka.sh`` broker) is in :mod:`tests.helpers.broker`. When no
broker can be had, every test that needs one fails with a message saying how to get
one: an integration test is never skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from exchange.bus import KafkaSettings
from tests.helpers.broker import (
    BrokerUnavailableError,
    LocalBroker,
    acquire_broker,
    free_port,
    unique_prefix,
)
from tests.helpers.federation import NOW, Federation, make_federation


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The bootstrap servers of a running broker, released (stopped if started here) at the end."""
    problem = ""
    try:
        lease = acquire_broker()
    except BrokerUnavailableError as exc:
        problem = str(exc)
    if problem:
        pytest.fail(problem, pytrace=False)
    try:
        yield lease.bootstrap
    finally:
        lease.release()


@pytest.fixture
async def private_broker() -> AsyncIterator[LocalBroker]:
    """A broker of the test's own (``kafka.sh`` on free ports), to stop and start at will;
    stopped and wiped at the end."""
    broker = LocalBroker(free_port(), free_port())
    await asyncio.to_thread(broker.start)
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(broker.reset)


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """:class:`exchange.bus.KafkaSettings` for the test broker (plaintext)."""
    return KafkaSettings(bootstrap_servers=kafka_bootstrap, client_id="ncp-test")


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix used by this test only."""
    return unique_prefix()


@pytest.fixture
def live_federation(tmp_path: Path, kafka_bootstrap: str) -> Federation:
    """FR, DE and NL on the real broker for one test: their own folder, stores and topic
    prefix; keys valid since 30 days before NOW."""
    return make_federation(
        tmp_path / "fed",
        prefix=unique_prefix(),
        bootstrap=kafka_bootstrap,
        valid_from=NOW - timedelta(days=30),
    )
