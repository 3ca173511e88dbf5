"""The closed bus: on a SASL_SSL broker with Kafka's StandardAuthorizer, only members
provisioned by ``exchange admin provision`` get in, and only to what is theirs."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from aiokafka.protocol.admin import CreateAclsRequest

from exchange.bus import (
    KafkaSettings,
    admin_kwargs,
    consumer_kwargs,
    ensure_topics,
    producer_kwargs,
    read_trust_lists,
    start_or_close,
)
from exchange.cli import main as exchange_main
from exchange.commands.admin import provision
from exchange.errors import ExchangeError
from exchange.provision import Policy
from exchange.provision_kafka import read_cluster
from exchange.topics import TopicKind, topic_name, trust_topic
from exchange.trust import TrustList
from nodes.config import load_config
from nodes.daemon import Node
from tests.helpers.broker import unique_prefix
from tests.helpers.federation import NOW, Federation, alert_data, make_federation
from tests.helpers.secure import OPERATOR, SecureBroker

pytestmark = pytest.mark.integration


def policy(prefix: str) -> Policy:
    """One broker: RF 1, min ISR 1."""
    return Policy(prefix=prefix, replication_factor=1, min_insync_replicas=1)


@pytest.fixture
async def fed(tmp_path: Path, secure_broker: SecureBroker) -> Federation:
    """FR, DE, NL on a fresh prefix, provisioned by the operator."""
    federation = make_federation(
        tmp_path / "fed",
        prefix=unique_prefix(),
        bootstrap=secure_broker.bootstrap,
        valid_from=NOW - timedelta(days=30),
    )
    operator = secure_broker.settings(OPERATOR)
    await provision(operator, policy(federation.prefix), federation.trust, ["User:auditor"])
    return federation


async def test_wrong_password_is_refused_as_a_configuration_error(
    secure_broker: SecureBroker, fed: Federation
) -> None:
    """A member with a wrong password is refused: it reads nothing, writes nothing, and the
    error is the library-neutral ExchangeError (aiokafka reports it as a failed bootstrap)."""
    wrong = secure_broker.settings("FR", password="not-the-password")
    with pytest.raises(ExchangeError):
        await read_trust_lists(wrong, fed.prefix, timeout_s=10)
    with pytest.raises(ExchangeError):
        await ensure_topics(wrong, fed.prefix)
    producer = AIOKafkaProducer(**producer_kwargs(wrong))
    with pytest.raises(KafkaError):
        await start_or_close(producer)  # closed, and what its start opened, when refused


async def test_a_client_without_sasl_cannot_read_a_topic(
    secure_broker: SecureBroker, fed: Federation
) -> None:
    """TLS without SASL, or plaintext, gets no metadata and no record from the listener."""
    await _produce(secure_broker.settings("FR"), fed.topic(), b"secret")
    for settings in (
        KafkaSettings(
            bootstrap_servers=secure_broker.bootstrap,
            security_protocol="SSL",  # type: ignore[arg-type]
            ssl_cafile=secure_broker.cafile,
            request_timeout_ms=5_000,
        ),
        KafkaSettings(bootstrap_servers=secure_broker.bootstrap, request_timeout_ms=5_000),
    ):
        with pytest.raises(KafkaError):
            await _read(settings, fed.topic(), None)


async def test_an_authenticated_non_member_cannot_read_or_write(
    secure_broker: SecureBroker, fed: Federation
) -> None:
    """XX has valid credentials but is not in the trust list: no topic is open to it."""
    xx = secure_broker.settings("XX")
    with pytest.raises((TopicAuthorizationFailedError, ClusterAuthorizationFailedError)):
        await _produce(xx, fed.topic(), b"flood")
    with pytest.raises((TopicAuthorizationFailedError, GroupAuthorizationFailedError)):
        await _read(xx, fed.topic(), f"{fed.prefix}.node.XX")


async def test_nl_cannot_join_de_consumer_group(
    secure_broker: SecureBroker, fed: Federation
) -> None:
    """NL may read the alerts topic, but not as a member of DE's group."""
    nl = secure_broker.settings("NL")
    with pytest.raises(GroupAuthorizationFailedError):
        await _read(nl, fed.topic(), f"{fed.prefix}.node.DE")
    await _read(nl, fed.topic(), f"{fed.prefix}.node.NL")  # its own group: allowed


async def test_a_member_cannot_change_acls_topics_or_the_trust_topic(
    secure_broker: SecureBroker, fed: Federation
) -> None:
    """FR cannot grant itself an ACL, create, delete or re-configure a topic, or write the
    trust topic."""
    fr = secure_broker.settings("FR")
    admin = AIOKafkaAdminClient(**admin_kwargs(fr))
    await admin.start()
    try:
        grant = CreateAclsRequest(2, fed.topic(), 3, "User:FR", "*", 7, 3)  # ALTER on alerts
        response = await admin._send_request(grant)
        assert [code for code, _ in response.creation_responses] == [31]  # cluster auth failed
        created = await admin.create_topics([NewTopic(f"{fed.prefix}.extra.v1", 1, 1)])
        assert [e[1] for e in created.topic_errors] == [TopicAuthorizationFailedError.errno]
        deleted = await admin.delete_topics([fed.topic()])
        assert [e[1] for e in deleted.topic_error_codes] == [TopicAuthorizationFailedError.errno]
        altered = await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, fed.topic(), {"retention.ms": "1"})]
        )
        codes = [r[0] for response in altered for r in response.resources]
        assert codes == [TopicAuthorizationFailedError.errno]
    finally:
        await admin.close()
    with pytest.raises(ExchangeError):
        await ensure_topics(fr, {f"{fed.prefix}.extra.v1": 1})
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(fr, trust_topic(fed.prefix), b"a forged trust list")


async def test_provision_creates_the_topics_as_specified_and_a_second_run_changes_nothing(
    tmp_path: Path, secure_broker: SecureBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator's command creates every topic with its configs and ACLs; run again, it
    says there is nothing to change."""
    prefix = unique_prefix()
    federation = make_federation(tmp_path / "fed", prefix=prefix, bootstrap=secure_broker.bootstrap)
    config = tmp_path / "operator.toml"
    table = secure_broker.kafka_table(OPERATOR)
    config.write_text(
        "[kafka]\n" + "".join(f'{k} = "{v}"\n' for k, v in table.items())
        + f'topic_prefix = "{prefix}"\n'
    )  # fmt: skip
    args = ["admin", "provision", "--kafka-config", str(config), "--trust",
            str(federation.trust_path), "--replication-factor", "1",
            "--retention-days", "30"]  # fmt: skip
    assert await asyncio.to_thread(exchange_main, args) == 0
    first = capsys.readouterr().out
    assert f"create topic {topic_name(TopicKind.ALERTS, prefix)}" in first
    assert f"grant User:DE READ GROUP literal:{prefix}.node.DE" in first
    assert await asyncio.to_thread(exchange_main, args) == 0
    assert capsys.readouterr().out.startswith("nothing to change")
    topics, _ = await read_cluster(
        secure_broker.settings(OPERATOR),
        [topic_name(TopicKind.ALERTS, prefix), trust_topic(prefix)],
    )
    alerts = topics[topic_name(TopicKind.ALERTS, prefix)].configs
    assert alerts["message.timestamp.type"] == "LogAppendTime"
    assert alerts["retention.ms"] == str(30 * 86_400_000)
    assert alerts["cleanup.policy"] == "delete"
    assert topics[trust_topic(prefix)].configs["cleanup.policy"] == "compact"


async def test_a_member_removed_from_the_trust_list_loses_its_acls(
    secure_broker: SecureBroker, fed: Federation
) -> None:
    """Provisioning with a list without NL revokes NL's access to the bus."""
    nl = secure_broker.settings("NL")
    await _produce(nl, fed.topic(), b"before")
    data = fed.trust.to_avro()
    data["members"] = [m for m in data["members"] if m["node_id"] != "NL"]
    without_nl = TrustList.from_avro({**data, "version": data["version"] + 1})
    operator = secure_broker.settings(OPERATOR)
    changes = await provision(operator, policy(fed.prefix), without_nl, ["User:auditor"])
    assert changes.delete_acls
    assert all(a.principal == "User:NL" for a in changes.delete_acls)
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(nl, fed.topic(), b"after")


async def _read(settings: KafkaSettings, topic: str, group: str | None) -> None:
    """Subscribe to ``topic`` (in ``group``) and fetch once; authorisation errors raise."""
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings, group))
    try:
        async with asyncio.timeout(30):
            await consumer.start()
            consumer.subscribe([topic])
            await consumer.getmany(timeout_ms=3000)
    finally:
        await consumer.stop()


async def _produce(settings: KafkaSettings, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    try:
        await producer.start()
        async with asyncio.timeout(30):
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def test_nodes_configured_for_sasl_ssl_run_the_full_exchange_fr_to_de(
    tmp_path: Path, secure_broker: SecureBroker, fed: Federation
) -> None:
    """FR and DE, each with its own SCRAM user (password from a file) over TLS, exchange
    alerts through the provisioned topics: DE stores what FR sent, and the auditor's
    replay over SASL_SSL (a read-only principal) finds it clean."""
    fast: dict[str, Any] = {
        "http": {"listen": ""},
        "publisher": {"backoff_initial_ms": 50, "backoff_max_ms": 1000, "poll_interval_ms": 50},
        "consumer": {"poll_timeout_ms": 100},
    }
    fr, de = (
        Node(load_config(fed.config_path(n), kafka=secure_broker.kafka_table(n), **fast))
        for n in ("FR", "DE")
    )
    assert fr.config.kafka.sasl_password is None  # the secret came from a file
    await fr.start()
    await de.start()
    try:
        for i in range(5):
            data = alert_data(f"SASL alert {i}", observed_at=datetime.now(UTC))
            await fr.submit("OffenceAlert", data, handling={"tlp": "GREEN", "code": "H0"})
        await de.wait_until(lambda: de.metrics.stored.value() >= 5, 90)
        stored = await de.store.list_records(topic=de.topics[0])
        titles = sorted(r.payload["title"] for r in stored if r.message_type == "OffenceAlert")
        assert titles == [f"SASL alert {i}" for i in range(5)]
        assert de.metrics.quarantined.value() == 0
    finally:
        await fr.stop()
        await de.stop()
    config = tmp_path / "auditor.toml"
    table = secure_broker.kafka_table("auditor")
    config.write_text("[kafka]\n" + "".join(f'{k} = "{v}"\n' for k, v in table.items()))
    report = tmp_path / "audit.json"
    args = ["audit", "replay", "--kafka-config", str(config), "--prefix", fed.prefix,
            "--trust", str(fed.trust_path), "--report", str(report)]  # fmt: skip
    assert await asyncio.to_thread(exchange_main, args) == 0
    assert json.loads(report.read_text())["violations"] == []


async def test_the_operator_publishes_the_trust_list_over_sasl_ssl_and_members_read_it(
    tmp_path: Path, secure_broker: SecureBroker, fed: Federation
) -> None:
    """`exchange trust publish --kafka-config` with the operator's principal writes the trust
    topic, which FR may read (and, above, may not write)."""
    config = tmp_path / "operator.toml"
    table = secure_broker.kafka_table(OPERATOR)
    config.write_text("[kafka]\n" + "".join(f'{k} = "{v}"\n' for k, v in table.items()))
    args = ["trust", "publish", str(fed.trust_path), "--kafka-config", str(config),
            "--prefix", fed.prefix]  # fmt: skip
    assert await asyncio.to_thread(exchange_main, args) == 0
    lists = await read_trust_lists(secure_broker.settings("FR"), fed.prefix)
    assert [value for _, value in lists] == [fed.trust_path.read_bytes()]
