"""Reads a cluster's federation topics and ACLs, and applies an :class:`exchange.provision.Plan`.

The I/O edge of ``exchange admin provision``: run with the operator's principal (a super
user of the brokers). aiokafka's admin client has no ACL methods; the CreateAcls,
DescribeAcls and DeleteAcls requests of its protocol package are sent through it.
Every aiokafka error becomes an :class:`~exchange.errors.ExchangeError`
(:func:`exchange.bus.kafka_errors`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest

from exchange.bus import KafkaSettings, admin_kwargs, kafka_errors, started
from exchange.errors import ExchangeError, Reason
from exchange.provision import (
    ALLOW,
    ANY_HOST,
    Acl,
    ExistingTopic,
    Operation,
    PatternType,
    Plan,
    ResourceType,
    TopicSpec,
)

_SECURITY_DISABLED = 54  # the cluster has no authorizer
_ANY = 1  # the ANY code of resource types, pattern types, operations and permissions


def _check(code: int, message: str | None, action: str) -> None:
    if code:
        error = for_code(code)
        raise ExchangeError(
            Reason.BAD_CONFIG, f"{action}: {error.__name__}: {message or error.description}"
        )


async def _send(admin: AIOKafkaAdminClient, request: Any) -> Any:
    return await admin._send_request(request)


async def read_topics(admin: AIOKafkaAdminClient, names: Sequence[str]) -> dict[str, ExistingTopic]:
    """The topics among ``names`` that exist, with partitions, replication and configs."""
    existing = set(await admin.list_topics())
    wanted = [n for n in names if n in existing]
    if not wanted:
        return {}
    shape: dict[str, tuple[int, int]] = {}
    for topic in await admin.describe_topics(wanted):
        _check(topic["error_code"], None, f"describing topic {topic['topic']}")
        partitions = topic["partitions"]
        replicas = max((len(p["replicas"]) for p in partitions), default=0)
        shape[topic["topic"]] = (len(partitions), replicas)
    configs: dict[str, dict[str, str]] = {n: {} for n in wanted}
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in wanted]
    for response in await admin.describe_configs(resources):
        for resource in response.resources:
            _check(resource[0], resource[1], f"describing configs of {resource[3]}")
            configs[resource[3]] = {e[0]: e[1] for e in resource[4] if e[1] is not None}
    return {n: ExistingTopic(n, shape[n][0], shape[n][1], configs[n]) for n in wanted if n in shape}


async def read_acls(admin: AIOKafkaAdminClient) -> list[Acl]:
    """Every ALLOW ACL for any host on topics, groups and transactional ids (others, such
    as DENY rules an operator made by hand, are not provisioning's and are left alone)."""
    request = DescribeAclsRequest(_ANY, None, _ANY, None, None, _ANY, _ANY)
    response = await _send(admin, request)
    if response.error_code == _SECURITY_DISABLED:
        raise ExchangeError(
            Reason.BAD_CONFIG,
            "describing ACLs: the cluster has no authorizer; a closed bus needs Kafka's"
            " StandardAuthorizer (authorizer.class.name) and SASL_SSL listeners",
        )
    _check(response.error_code, response.error_message, "describing ACLs")
    out: list[Acl] = []
    kinds = {t.value for t in ResourceType}
    ops = {o.value for o in Operation}
    for resource in response.resources:
        rtype, name, pattern, entries = resource[0], resource[1], resource[2], resource[3]
        if rtype not in kinds or pattern not in (3, 4):
            continue
        for principal, host, operation, permission in entries:
            if permission == ALLOW and host == ANY_HOST and operation in ops:
                out.append(
                    Acl(
                        ResourceType(rtype),
                        name,
                        PatternType(pattern),
                        principal,
                        Operation(operation),
                    )
                )
    return out


async def _create_acls(admin: AIOKafkaAdminClient, acls: Iterable[Acl]) -> None:
    for acl in acls:
        request = CreateAclsRequest(
            acl.resource_type, acl.resource_name, acl.pattern, acl.principal, ANY_HOST,
            acl.operation, ALLOW,
        )  # fmt: skip
        response = await _send(admin, request)
        for code, message in response.creation_responses:
            _check(code, message, f"granting {acl}")


async def _delete_acls(admin: AIOKafkaAdminClient, acls: Iterable[Acl]) -> None:
    for acl in acls:
        request = DeleteAclsRequest(
            acl.resource_type, acl.resource_name, acl.pattern, acl.principal, ANY_HOST,
            acl.operation, ALLOW,
        )  # fmt: skip
        response = await _send(admin, request)
        for result in response.filter_responses:
            _check(result[0], result[1], f"revoking {acl}")


async def _create_topics(
    admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec], timeout_ms: int
) -> None:
    if not specs:
        return
    response = await admin.create_topics(
        [
            NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.configs))
            for s in specs
        ],
        timeout_ms=timeout_ms,
    )
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (created meanwhile)
            _check(code, entry[2] if len(entry) > 2 else None, f"creating topic {name}")


async def read_cluster(
    settings: KafkaSettings, topic_names: Sequence[str]
) -> tuple[dict[str, ExistingTopic], list[Acl]]:
    """The federation topics that exist and the cluster's ACLs."""
    with kafka_errors("reading the cluster"):
        async with started(AIOKafkaAdminClient(**admin_kwargs(settings))) as admin:
            return await read_topics(admin, topic_names), await read_acls(admin)


async def apply(settings: KafkaSettings, plan: Plan) -> None:
    """Carry out ``plan``: topics first (so ACLs never name a topic that cannot be made),
    then configs and partitions, then ACL grants, then revocations."""
    with kafka_errors("provisioning the cluster"):
        async with started(AIOKafkaAdminClient(**admin_kwargs(settings))) as admin:
            await _create_topics(admin, plan.create_topics, settings.request_timeout_ms)
            if plan.alter_configs:
                response = await admin.alter_configs(
                    [
                        ConfigResource(ConfigResourceType.TOPIC, name, configs=dict(configs))
                        for name, configs in plan.alter_configs
                    ]
                )
                for resource in response.resources:
                    _check(resource[0], resource[1], f"configuring topic {resource[3]}")
            if plan.add_partitions:
                await admin.create_partitions(
                    {name: NewPartitions(total) for name, total in plan.add_partitions},
                    timeout_ms=settings.request_timeout_ms,
                )
            await _create_acls(admin, plan.create_acls)
            await _delete_acls(admin, plan.delete_acls)
