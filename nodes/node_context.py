"""What a node is built from: its keys and verified trust list (:func:`load_identity`), and
the consumer pipeline's context derived from its config (:func:`pipeline_context`: each
topic's rule chain and retraction policy, the skew bound, the node's own keys to skip).
Used by :class:`nodes.daemon.Node`, which re-exports both.
"""

from __future__ import annotations

from datetime import timedelta

from exchange.keys import EncryptionKey, SigningKey
from exchange.topics import TopicKind, topic_name
from exchange.trust import TrustList
from nodes import trustfeed
from nodes.blacklist.rules import blacklist_rules
from nodes.config import NodeConfig, OnRetraction, OwnMessages
from nodes.pipeline import PipelineContext, TopicPolicy
from nodes.rules import build_chain


def load_identity(config: NodeConfig) -> tuple[SigningKey, EncryptionKey, TrustList]:
    """The node's keys and the verified trust list named by ``config``."""
    signer = SigningKey.load(config.keys.signing_key)
    decrypter = EncryptionKey.load(config.keys.encryption_key)
    trust = trustfeed.load_pinned(config)  # root pinned by fingerprint
    return signer, decrypter, trust


def pipeline_context(
    config: NodeConfig, trust: TrustList, decrypter: EncryptionKey | None
) -> PipelineContext:
    policies: dict[str, TopicPolicy] = {}
    for kind in TopicKind:
        rules = config.rules.for_kind(kind)
        policies[topic_name(kind, config.kafka.topic_prefix)] = TopicPolicy(
            chain=build_chain(rules, config.node) + blacklist_rules(kind),
            purge_on_retraction=rules.on_retraction is OnRetraction.PURGE,
        )
    own: frozenset[str] = frozenset()
    if config.consumer.own_messages is OwnMessages.SKIP and config.node in trust.members:
        own = frozenset(k.key_id for k in trust.member(config.node).signing_keys)
    return PipelineContext(
        node=config.node,
        trust=trust,
        decryption_key=decrypter,
        policies=policies,
        max_skew=timedelta(seconds=config.consumer.max_skew_s),
        skip_key_ids=own,
    )
