"""How the node's loops run: the ``[retry]`` backoff every loop shares
(:class:`RetryConfig`), the ``[publisher]`` table (:class:`PublisherConfig`) and the
``[consumer]`` table (:class:`ConsumerConfig`, with :class:`OwnMessages` and the default
number of record-opening processes). :mod:`nodes.config` assembles them into
:class:`~nodes.config.NodeConfig` and re-exports these names.
"""

from __future__ import annotations

import os
from enum import StrEnum

from pydantic import Field, model_validator

from nodes.config_rules import Section
from nodes.retry import RetryPolicy


class RetryConfig(Section):
    """The backoff of every loop (publisher, consumer, connectors, retention, and the
    supervisor restarting a loop that crashed): capped exponential, full jitter."""

    initial_ms: int = Field(default=200, ge=1, le=600_000)
    max_ms: int = Field(default=30_000, ge=1, le=3_600_000)
    #: A loop down (crashed, waiting to restart, or failing again right after its restart)
    #: for longer than this makes /healthz answer 503 naming it.
    unhealthy_after_s: float = Field(default=60.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _order(self) -> RetryConfig:
        if self.max_ms < self.initial_ms:
            raise ValueError("max_ms must be >= initial_ms")
        return self

    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.initial_ms / 1000, self.max_ms / 1000)


class PublisherConfig(Section):
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    #: Former names of ``[retry] initial_ms`` / ``max_ms``, still accepted so node.toml files
    #: written before ``[retry]`` load unchanged; after loading they equal the [retry] values.
    backoff_initial_ms: int = Field(default=200, ge=1, le=600_000)
    backoff_max_ms: int = Field(default=30_000, ge=1, le=3_600_000)
    poll_interval_ms: int = Field(default=500, ge=10, le=600_000)
    #: Items signed longer ago than this but not yet on the bus (a broker outage) are signed
    #: again with a fresh time before sending: receivers refuse a created_at further than
    #: their max_skew_s (300 s by default) from the broker's time. Keep it well below that.
    reseal_after_s: float = Field(default=120.0, gt=0, le=86_400)
    #: Sends not acknowledged within this stop the producer (failing them, so they can be
    #: signed again later): an idempotent producer would otherwise retry them for ever and
    #: deliver them, stale, whenever the broker returns.
    ack_timeout_s: float = Field(default=60.0, gt=0, le=3_600)

    @model_validator(mode="after")
    def _order(self) -> PublisherConfig:
        if self.backoff_max_ms < self.backoff_initial_ms:
            raise ValueError("backoff_max_ms must be >= backoff_initial_ms")
        return self


class OwnMessages(StrEnum):
    """What a node does with its own messages when it reads them back from the bus."""

    #: match each against the outbox by envelope hash (one hash, no signature check) and
    #: store it; one signed with this node's key that it never sent is quarantined
    MATCH = "match"
    STORE = "store"  # verify and store them like any other (its store shows what it shared)
    SKIP = "skip"  # skip them unverified (half the CPU on a node that mostly sends)


def default_open_processes() -> int:
    """2 worker processes when there are 2 cores or more to run them on, else 0 (one core:
    processes only add work).

    Re-measured with ZIP-215 batch checks (2026-11-30, DE alone draining 20,000 alerts on
    the 2 shared cores, two alternating pairs at a quiet moment): 11.0k msg/s with 2
    processes, 8.1k with threads (0.74x). CPU a record: threads 126 us, all in the node
    process (the GIL is released only for the batch check, ~10 us of it); processes 52 us
    in the node process and 79 us in the workers. On a busier machine (8 more pairs, load
    average 3-6 from other work) the two came out even (paired ratios 0.44-1.34, median
    about 1.0): other work then holds the second core the workers need. A node
    has its cores to itself, so processes stay the default; ``open_processes = 0`` saves
    their memory (~170 MB on DE).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 2 if cores >= 2 else 0


class ConsumerConfig(Section):
    max_records: int = Field(default=2000, ge=1, le=100_000)
    own_messages: OwnMessages = OwnMessages.MATCH
    poll_timeout_ms: int = Field(default=500, ge=1, le=60_000)
    verify_threads: int = Field(default=2, ge=0, le=32)  # 0: verify on the event loop's thread
    #: Worker processes opening records (nodes.openpool); 0: threads (verify_threads) only.
    #: Default: 2 when this process may run on 2 or more cores, else 0.
    open_processes: int = Field(default_factory=default_open_processes, ge=0, le=64)
    max_skew_s: float = Field(default=300.0, ge=0, le=86_400)
    #: A record value longer than this is quarantined (too_large) before any decoding.
    max_record_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    #: Bytes one fetch may bring, per partition and in all (what a batch costs in memory).
    max_partition_fetch_bytes: int = Field(default=4 * 1_048_576, ge=65_536, le=64 * 1_048_576)
    fetch_max_bytes: int = Field(default=16 * 1_048_576, ge=65_536, le=256 * 1_048_576)
