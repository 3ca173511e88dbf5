"""The provisioning plan (pure): topics and ACLs wanted from the trust list, the changes to
reach them, and nothing when the cluster already matches."""

from __future__ import annotations

from exchange.provision import (
    Acl,
    ExistingTopic,
    Operation,
    PatternType,
    Policy,
    ResourceType,
    desired_acls,
    desired_topics,
    plan,
)

POLICY = Policy(prefix="ncp")


def as_existing(policy: Policy = POLICY) -> dict[str, ExistingTopic]:
    return {
        t.name: ExistingTopic(t.name, t.partitions, t.replication_factor, dict(t.configs))
        for t in desired_topics(policy)
    }


def test_every_topic_gets_rf_min_isr_append_time_compression_and_its_cleanup_policy() -> None:
    """Data topics are deleted by age (here: never), the trust topic compacted."""
    topics = {t.name: t for t in desired_topics(POLICY)}
    assert set(topics) == {
        "ncp.alerts.v1", "ncp.blacklist.v1", "ncp.pseudonyms.v1", "ncp.indicators.v1",
        "ncp.trust.v1",
    }  # fmt: skip
    for t in topics.values():
        assert t.replication_factor == 3
        assert t.configs["min.insync.replicas"] == "2"
        assert t.configs["message.timestamp.type"] == "LogAppendTime"
        assert t.configs["compression.type"] == "producer"
        assert t.configs["unclean.leader.election.enable"] == "false"
    assert topics["ncp.blacklist.v1"].partitions == 1
    assert topics["ncp.alerts.v1"].configs["cleanup.policy"] == "delete"
    assert topics["ncp.alerts.v1"].configs["retention.ms"] == "-1"
    assert topics["ncp.trust.v1"].configs["cleanup.policy"] == "compact"


def test_a_member_may_use_only_its_own_group_and_transactional_ids() -> None:
    """FR's group ACLs name FR's group and prefix only; no member may write the trust topic
    or alter anything."""
    acls = desired_acls(POLICY, ["FR", "DE"])
    groups = {(a.resource_name, a.pattern) for a in acls if a.principal == "User:FR"
              and a.resource_type is ResourceType.GROUP}  # fmt: skip
    assert groups == {("ncp.node.FR", PatternType.LITERAL), ("ncp.node.FR.", PatternType.PREFIXED)}
    assert not any(
        a.resource_name == "ncp.trust.v1" and a.operation is Operation.WRITE for a in acls
    )
    forbidden = {Operation.ALTER, Operation.ALTER_CONFIGS, Operation.CREATE, Operation.DELETE}
    assert not any(a.operation in forbidden for a in acls)
    assert not any(a.resource_type is ResourceType.CLUSTER for a in acls)


def test_nothing_to_do_when_the_cluster_matches() -> None:
    """The second run of provision: an empty plan."""
    acls = desired_acls(POLICY, ["FR", "DE"])
    changes = plan(POLICY, desired_topics(POLICY), acls, as_existing(), acls)
    assert changes.empty
    assert changes.lines() == []


def test_a_drifted_config_is_reset_and_a_stray_grant_revoked() -> None:
    """A retention changed by hand is set back; an ACL on a federation resource that the
    trust list does not justify (a removed member) is revoked; others are left alone."""
    acls = desired_acls(POLICY, ["FR"])
    existing = as_existing()
    alerts = existing["ncp.alerts.v1"]
    existing["ncp.alerts.v1"] = ExistingTopic(
        alerts.name, alerts.partitions, alerts.replication_factor,
        {**alerts.configs, "retention.ms": "1000"},
    )  # fmt: skip
    stray = Acl(ResourceType.TOPIC, "ncp.alerts.v1", PatternType.LITERAL, "User:XX",
                Operation.WRITE)  # fmt: skip
    foreign = Acl(ResourceType.TOPIC, "other.topic", PatternType.LITERAL, "User:XX",
                  Operation.WRITE)  # fmt: skip
    changes = plan(POLICY, desired_topics(POLICY), acls, existing, acls | {stray, foreign})
    assert [name for name, _ in changes.alter_configs] == ["ncp.alerts.v1"]
    assert changes.delete_acls == (stray,)
    assert changes.create_acls == ()


def test_fewer_partitions_are_grown_more_or_another_rf_only_reported() -> None:
    """Kafka can add partitions but not remove them, nor change RF in place: warnings."""
    existing = as_existing()
    a = existing["ncp.alerts.v1"]
    existing["ncp.alerts.v1"] = ExistingTopic(a.name, 1, 3, a.configs)
    i = existing["ncp.indicators.v1"]
    existing["ncp.indicators.v1"] = ExistingTopic(i.name, 6, 1, i.configs)
    changes = plan(POLICY, desired_topics(POLICY), set(), existing, [])
    assert changes.add_partitions == (("ncp.alerts.v1", 3),)
    assert len(changes.warnings) == 2
