"""What a federation's Kafka cluster should hold: its topics and its ACLs (pure).

:func:`desired_topics` lists the federation topics with their partitions, replication
factor and configs; :func:`desired_acls` the ACLs of each member's principal;
:func:`plan` compares both with what the cluster has (as read by
:mod:`exchange.provision_kafka`) and says what to create, re-configure and delete. No I/O
here: the plan is a value the operator's command prints and then applies.

Access model (Kafka's StandardAuthorizer: what no ACL allows is refused):

* every member ``User:<NODE>`` may READ, WRITE, DESCRIBE and DESCRIBE_CONFIGS the four
  data topics, and READ/DESCRIBE the trust topic (it cannot write it);
* it may use the consumer group ``<prefix>.node.<NODE>`` and groups and transactional ids
  under ``<prefix>.node.<NODE>.``, and no other;
* readers (auditors) may READ and DESCRIBE every federation topic, and use groups under
  ``<prefix>.audit.``;
* nobody but the operator (a super user of the brokers) may create, delete or
  re-configure topics, write the trust topic, or change ACLs: no such ACL is granted.

Every ACL on a federation resource that the plan does not want (a member removed from
the trust list, a grant made by hand) is deleted: the cluster's ACLs are the trust list's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from exchange.ids import NodeId
from exchange.topics import TopicKind, topic_name, trust_topic


class ResourceType(IntEnum):
    """Kafka's ACL resource types (wire codes)."""

    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5


class PatternType(IntEnum):
    """Kafka's ACL resource pattern types (wire codes)."""

    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    """Kafka's ACL operations (wire codes)."""

    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12


#: ALLOW, the only permission the plan grants (wire code).
ALLOW = 3
ANY_HOST = "*"


@dataclass(frozen=True, order=True, slots=True)
class Acl:
    """One ALLOW ACL for any host."""

    resource_type: ResourceType
    resource_name: str
    pattern: PatternType
    principal: str
    operation: Operation

    def __str__(self) -> str:
        return (
            f"{self.principal} {self.operation.name} {self.resource_type.name}"
            f" {self.pattern.name.lower()}:{self.resource_name}"
        )


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic as it should be."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Policy:
    """The operator's choices for the federation's topics."""

    prefix: str
    partitions: int = 3
    replication_factor: int = 3
    min_insync_replicas: int = 2
    compression_type: str = "producer"
    #: ``retention.ms`` of the data topics; -1 keeps every record (the auditor replays
    #: the whole history). The trust topic is compacted, never deleted by age.
    retention_ms: Mapping[TopicKind, int] = field(
        default_factory=lambda: {kind: -1 for kind in TopicKind}
    )
    #: Principal of a member, from its node id.
    principal_format: str = "User:{node}"

    def principal(self, node: NodeId | str) -> str:
        return self.principal_format.format(node=node)


def desired_topics(policy: Policy) -> list[TopicSpec]:
    """The four data topics and the trust topic, each with its configs."""
    common = {
        "min.insync.replicas": str(min(policy.min_insync_replicas, policy.replication_factor)),
        # the broker stamps each record with its clock: the federation's time
        "message.timestamp.type": "LogAppendTime",
        "compression.type": policy.compression_type,
        "unclean.leader.election.enable": "false",
    }
    specs = [
        TopicSpec(
            topic_name(kind, policy.prefix),
            1 if kind is TopicKind.BLACKLIST else policy.partitions,  # ordered per list
            policy.replication_factor,
            {
                **common,
                "cleanup.policy": "delete",
                "retention.ms": str(policy.retention_ms.get(kind, -1)),
            },
        )
        for kind in TopicKind
    ]
    specs.append(
        TopicSpec(
            trust_topic(policy.prefix),
            1,
            policy.replication_factor,
            {**common, "cleanup.policy": "compact"},
        )
    )
    return specs


def member_group(prefix: str, node: NodeId | str) -> str:
    """The consumer group of a member's node (as nodes.config names it)."""
    return f"{prefix}.node.{node}"


def desired_acls(
    policy: Policy, members: Iterable[NodeId | str], readers: Sequence[str] = ()
) -> set[Acl]:
    """The ACLs of the members' and readers' principals (see the module doc)."""
    prefix = policy.prefix
    data = [topic_name(kind, prefix) for kind in TopicKind]
    trust = trust_topic(prefix)
    t, g, x = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    lit, pre = PatternType.LITERAL, PatternType.PREFIXED
    out: set[Acl] = set()
    for node in members:
        who = policy.principal(node)
        for topic in data:
            for op in (Operation.READ, Operation.WRITE, Operation.DESCRIBE):
                out.add(Acl(t, topic, lit, who, op))
            out.add(Acl(t, topic, lit, who, Operation.DESCRIBE_CONFIGS))
        for op in (Operation.READ, Operation.DESCRIBE, Operation.DESCRIBE_CONFIGS):
            out.add(Acl(t, trust, lit, who, op))
        group = member_group(prefix, node)
        for name, pattern in ((group, lit), (f"{group}.", pre)):
            for op in (Operation.READ, Operation.DESCRIBE):
                out.add(Acl(g, name, pattern, who, op))
            for op in (Operation.WRITE, Operation.DESCRIBE):
                out.add(Acl(x, name, pattern, who, op))
    for who in readers:
        for topic in [*data, trust]:
            for op in (Operation.READ, Operation.DESCRIBE, Operation.DESCRIBE_CONFIGS):
                out.add(Acl(t, topic, lit, who, op))
        for op in (Operation.READ, Operation.DESCRIBE):
            out.add(Acl(g, f"{prefix}.audit.", pre, who, op))
    return out


def is_federation_resource(prefix: str, acl: Acl) -> bool:
    """Whether ``acl`` is on one of the federation's topics, groups or transactional ids:
    the ACLs provisioning owns (others on the cluster are left alone)."""
    if acl.resource_type is ResourceType.TOPIC:
        return acl.resource_name.startswith(f"{prefix}.")
    if acl.resource_type in (ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID):
        return acl.resource_name.startswith(f"{prefix}.")
    return False


@dataclass(frozen=True, slots=True)
class ExistingTopic:
    """A topic as the cluster has it: partitions, replication, its dynamic configs."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Plan:
    """What provisioning changes; empty when the cluster is as it should be."""

    create_topics: tuple[TopicSpec, ...] = ()
    #: topic -> every config it should have (AlterConfigs sets the whole set)
    alter_configs: tuple[tuple[str, Mapping[str, str]], ...] = ()
    add_partitions: tuple[tuple[str, int], ...] = ()
    create_acls: tuple[Acl, ...] = ()
    delete_acls: tuple[Acl, ...] = ()
    #: differences provisioning cannot fix (fewer partitions, another replication factor)
    warnings: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.create_topics
            or self.alter_configs
            or self.add_partitions
            or self.create_acls
            or self.delete_acls
        )

    def lines(self) -> list[str]:
        """One human line per change (and per warning)."""
        out = [
            f"create topic {t.name}: {t.partitions} partitions, RF {t.replication_factor}, "
            + ", ".join(f"{k}={v}" for k, v in sorted(t.configs.items()))
            for t in self.create_topics
        ]
        out += [
            f"configure topic {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(c.items()))
            for name, c in self.alter_configs
        ]
        out += [f"add partitions to {name}: {n} in all" for name, n in self.add_partitions]
        out += [f"grant {acl}" for acl in self.create_acls]
        out += [f"revoke {acl}" for acl in self.delete_acls]
        out += [f"warning: {w}" for w in self.warnings]
        return out


def plan(
    policy: Policy,
    topics: Sequence[TopicSpec],
    acls: set[Acl],
    existing_topics: Mapping[str, ExistingTopic],
    existing_acls: Iterable[Acl],
) -> Plan:
    """The changes that bring the cluster from ``existing_*`` to ``topics`` and ``acls``."""
    create: list[TopicSpec] = []
    alter: list[tuple[str, Mapping[str, str]]] = []
    grow: list[tuple[str, int]] = []
    warnings: list[str] = []
    for spec in topics:
        have = existing_topics.get(spec.name)
        if have is None:
            create.append(spec)
            continue
        if any(have.configs.get(k) != v for k, v in spec.configs.items()):
            alter.append((spec.name, dict(spec.configs)))
        if have.partitions < spec.partitions:
            grow.append((spec.name, spec.partitions))
        elif have.partitions > spec.partitions:
            warnings.append(
                f"{spec.name} has {have.partitions} partitions, more than {spec.partitions}:"
                " Kafka cannot remove partitions; left as it is"
            )
        if have.replication_factor != spec.replication_factor:
            warnings.append(
                f"{spec.name} has replication factor {have.replication_factor}, not"
                f" {spec.replication_factor}: change it with a partition reassignment"
            )
    have_acls = set(existing_acls)
    owned = {a for a in have_acls if is_federation_resource(policy.prefix, a)}
    return Plan(
        create_topics=tuple(create),
        alter_configs=tuple(alter),
        add_partitions=tuple(grow),
        create_acls=tuple(sorted(acls - have_acls)),
        delete_acls=tuple(sorted(owned - acls)),
        warnings=tuple(warnings),
    )
