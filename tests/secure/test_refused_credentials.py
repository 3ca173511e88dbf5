"""Credentials the SASL_SSL broker refuses are named as refused, at once and without retry:
never taken for a broker outage, by the protocol's clients, a node or the CLI."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from exchange.bus import (
    ensure_topics,
    kafka_errors,
    producer_kwargs,
    read_trust_lists,
    start_or_close,
)
from exchange.cli import main as exchange_main
from exchange.errors import AuthenticationError, Reason
from nodes.config import load_config
from nodes.consumer import Consumer, end_offsets
from nodes.daemon import Node, load_identity, pipeline_context
from nodes.publisher import Publisher
from nodes.store.base import open_store
from nodes.supervisor import TaskState
from tests.helpers.broker import unique_prefix
from tests.helpers.federation import NOW, Federation, make_federation
from tests.helpers.nodes import FAST
from tests.helpers.secure import OPERATOR, SecureBroker
from tests.node.helpers import alert_items, enqueue

pytestmark = pytest.mark.integration

WRONG = "not-the-password"


@pytest.fixture
def fed(tmp_path: Path, secure_broker: SecureBroker) -> Federation:
    """FR, DE, NL on the secured broker under a fresh prefix (nothing provisioned: with a
    wrong password nobody gets that far)."""
    return make_federation(
        tmp_path / "fed",
        prefix=unique_prefix(),
        bootstrap=secure_broker.bootstrap,
        valid_from=NOW - timedelta(days=30),
    )


def _refused(error: AuthenticationError, user: str) -> None:
    """``error`` is the refusal of ``user``'s credentials, named, not retriable, secret-free."""
    assert error.reason is Reason.BAD_CONFIG
    assert error.field == "kafka"
    assert not error.retriable
    assert f"refused SASL user {user!r} (SCRAM-SHA-512)" in str(error)
    assert "sasl_password" in str(error)
    assert WRONG not in str(error)


async def test_every_client_reports_a_wrong_password_as_refused_credentials(
    secure_broker: SecureBroker, fed: Federation
) -> None:
    """Creating topics, reading the trust topic, reading end offsets and starting a producer
    with a wrong password, or as a user the broker does not know, each fail at once with a
    non-retriable AuthenticationError naming the user: not a TransientError retried for ever."""
    for user in ("FR", "nobody"):
        wrong = secure_broker.settings(user, password=WRONG)
        attempts: list[Any] = [
            ensure_topics(wrong, fed.prefix),
            read_trust_lists(wrong, fed.prefix, timeout_s=10),
            end_offsets(wrong, [fed.topic()]),
        ]
        for attempt in attempts:
            with pytest.raises(AuthenticationError) as caught:
                await asyncio.wait_for(attempt, 30)
            _refused(caught.value, user)
        producer = AIOKafkaProducer(**producer_kwargs(wrong))
        with pytest.raises(AuthenticationError) as caught, kafka_errors("starting"):
            await start_or_close(producer)  # closed, and what its start opened, when refused
        _refused(caught.value, user)


async def test_a_node_with_a_wrong_password_fails_at_once_naming_the_refusal(
    tmp_path: Path, secure_broker: SecureBroker, fed: Federation
) -> None:
    """A node whose password file holds a wrong password does not retry as for an outage:
    a loop fails fatally, unrestarted, and the health check says the credentials are
    refused (``exchange node run`` then exits 1)."""
    password = tmp_path / "FR.password"
    password.write_text(WRONG + "\n")
    table = {**secure_broker.kafka_table("FR"), "sasl_password_file": str(password)}
    node = Node(load_config(fed.config_path("FR"), **{**FAST, "kafka": table}))
    await node.start()
    try:
        await asyncio.wait_for(node.supervisor.failed.wait(), 30)
        fatal = node.supervisor.fatal
        assert fatal is not None
        assert fatal.state is TaskState.FAILED
        assert "refused SASL user 'FR' (SCRAM-SHA-512)" in (fatal.last_error or "")
        assert all(loop.restarts == 0 for loop in node.supervisor.loops.values())
        problems = await node.health()
        assert any(
            f"task {fatal.name} failed" in p and "refused SASL user 'FR'" in p for p in problems
        )
        assert not any(WRONG in p for p in problems)
    finally:
        await node.stop()


async def test_node_status_names_refused_credentials(
    tmp_path: Path, secure_broker: SecureBroker, fed: Federation, capsys: pytest.CaptureFixture[str]
) -> None:
    """``exchange node status`` with a wrong password reports the store's side and names the
    refused credentials where the lag would be."""
    password = tmp_path / "FR.password"
    password.write_text(WRONG + "\n")
    table = {**secure_broker.kafka_table("FR"), "sasl_password_file": str(password)}
    config = fed.config_path("FR").with_name("wrong-password.toml")  # beside its keys
    kafka = "".join(f'{k} = "{v}"\n' for k, v in table.items())
    lines = fed.config_path("FR").read_text().splitlines(keepends=True)
    config.write_text("".join(kafka if x.startswith("bootstrap_servers") else x for x in lines))
    args = ["node", "status", "--config", str(config), "--json"]
    assert await asyncio.to_thread(exchange_main, args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lag"] is None
    assert "refused SASL user 'FR' (SCRAM-SHA-512)" in report["kafka_error"]


async def test_the_publisher_and_the_consumer_end_on_refused_credentials(
    tmp_path: Path, secure_broker: SecureBroker, fed: Federation
) -> None:
    """Run on their own (as after the cluster changed the password under a running node),
    the publisher and the consumer loops end with AuthenticationError at the first refusal,
    for the supervisor to stop the node, instead of retrying it as an outage."""
    password = tmp_path / "FR.password"
    password.write_text(WRONG + "\n")
    table = {**secure_broker.kafka_table("FR"), "sasl_password_file": str(password)}
    config = load_config(fed.config_path("FR"), **{**FAST, "kafka": table})
    signer, decrypter, trust = load_identity(config)
    await enqueue(fed, "FR", alert_items(fed, "FR", 1))  # something to publish
    store = open_store(config.store.url)
    await store.open()
    consumer = Consumer(
        node=config.node_id,
        group=config.consumer_group,
        topics=[fed.topic()],
        store=store,
        kafka=config.kafka.settings(),
        context=pipeline_context(config, trust, decrypter),
        config=config.consumer.model_copy(update={"open_processes": 0}),
        backoff=config.publisher,
    )
    try:
        publisher = Publisher(
            node=config.node,
            store=store,
            kafka=config.kafka.settings(),
            signer=signer,
            trust=trust,
            config=config.publisher,
        )
        with pytest.raises(AuthenticationError) as published:
            await asyncio.wait_for(publisher.run(), 30)
        _refused(published.value, "FR")
        with pytest.raises(AuthenticationError) as consumed:
            await asyncio.wait_for(consumer.run(), 30)
        _refused(consumed.value, "FR")
    finally:
        consumer.shutdown_pool()
        await store.close()


async def test_a_cli_command_with_a_wrong_password_exits_2_naming_the_refusal(
    tmp_path: Path, secure_broker: SecureBroker, fed: Federation, capsys: pytest.CaptureFixture[str]
) -> None:
    """``exchange trust publish`` as the operator with a wrong password stops with exit code
    2 and an error naming the refused user, not a retried outage."""
    password = tmp_path / "operator.password"
    password.write_text(WRONG + "\n")
    table = {**secure_broker.kafka_table(OPERATOR), "sasl_password_file": str(password)}
    config = tmp_path / "operator.toml"
    config.write_text("[kafka]\n" + "".join(f'{k} = "{v}"\n' for k, v in table.items()))
    args = ["trust", "publish", str(fed.trust_path), "--kafka-config", str(config),
            "--prefix", fed.prefix]  # fmt: skip
    assert await asyncio.to_thread(exchange_main, args) == 2
    error = capsys.readouterr().err
    assert f"refused SASL user {OPERATOR!r} (SCRAM-SHA-512)" in error
    assert WRONG not in error
