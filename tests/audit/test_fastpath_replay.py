"""The replay with its fast path, on the real broker: among records the fast path takes,
a forged signature, a duplicate id, a gap and a fork are each found in place."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchange.audit.fastpath import SHAPES
from exchange.audit.reader import KafkaHistoryReader
from exchange.audit.replay import ReplayOutcome, replay_kafka
from exchange.audit.verify_pool import VerifyPool
from exchange.bus import KafkaSettings
from exchange.ids import Topic
from tests.audit.history import Placed, audit_federation, forge, produce
from tests.helpers.broker import create_topics, unique_prefix
from tests.helpers.federation import Federation

pytestmark = pytest.mark.integration

CLEAN = 40  # FR's clean chain before the injected records: the shape is learned early


@dataclass
class Built:
    fed: Federation
    topic: str
    at: dict[str, Placed]


async def _build(bootstrap: str, folder: Path) -> Built:
    fed = audit_federation(folder, ("FR", "DE"))
    topic = Topic(f"{unique_prefix()}.alerts.v1")
    await create_topics(bootstrap, [topic], 2)
    now = datetime.now(UTC)
    fr = fed.sender("FR")
    plan: list[tuple[str, bytes | None, bytes, int]] = []
    names: list[str] = []

    def put(name: str, key: bytes | None, value: bytes, partition: int = 0) -> None:
        names.append(name)
        plan.append((topic, key, value, partition))

    first = fr.alert(now, topic=topic)
    put("clean0", first.key, first.value)
    for i in range(1, CLEAN):
        last_link = fr.chain.next(topic)
        s = fr.alert(now, topic=topic)
        put(f"clean{i}", s.key, s.value, i % 2)
    forged = fr.alert(now, topic=topic, advance=False)
    put("forged", forged.key, forge(forged.value))
    dup = fr.alert(now, topic=topic, message_id=first.envelope.message_id)
    put("duplicate", dup.key, dup.value, 1)
    fr.alert(now, topic=topic)  # signed at the next sequence, never published: a gap
    gap = fr.alert(now, topic=topic)
    put("gap", gap.key, gap.value)
    fork = fr.alert(now, topic=topic, link=last_link, advance=False)  # another sequence 40
    put("fork", fork.key, fork.value, 1)
    for i in range(10):
        s = fr.alert(now, topic=topic)
        put(f"after{i}", s.key, s.value, i % 2)
    placed = await produce(bootstrap, plan)
    return Built(fed, topic, dict(zip(names, placed, strict=True)))


@pytest.fixture(scope="module")
def built(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Built:
    return asyncio.run(_build(kafka_bootstrap, tmp_path_factory.mktemp("fastpath")))


def _replay(bootstrap: str, built: Built, workers: int) -> ReplayOutcome:
    async def run() -> ReplayOutcome:
        now = datetime.now(UTC)
        trust, root = built.fed.trust_bytes, built.fed.root.public_bytes
        with VerifyPool(trust, root, now=now, workers=workers) as pool:
            reader = KafkaHistoryReader(
                KafkaSettings(bootstrap_servers=bootstrap, client_id="test-fastpath"),
                [built.topic],
                batch_records=8,  # several batches: the shape is known from the second on
            )
            return await replay_kafka(reader, pool, anchored=False)

    return asyncio.run(run())


def _found(outcome: ReplayOutcome, built: Built) -> dict[str, set[str]]:
    """The kinds of violation found at each injected record's place."""
    out: dict[str, set[str]] = {}
    for name in ("forged", "duplicate", "gap", "fork"):
        p = built.at[name]
        out[name] = {
            v.kind
            for v in outcome.violations
            if (v.topic, v.partition, v.offset) == (p.topic, p.partition, p.offset)
        }
    return out


EXPECTED = {
    "forged": {"bad_signature"},
    "duplicate": {"duplicate_message_id"},
    "gap": {"sequence_gap"},
    "fork": {"fork"},
}


def test_inline_replay_takes_the_fast_path_and_finds_every_violation(
    kafka_bootstrap: str, built: Built
) -> None:
    """Verified in this process: most records go the fast path, and each injected
    record is reported with its kind, and nothing else is."""
    before = SHAPES.accepted
    outcome = _replay(kafka_bootstrap, built, workers=0)
    assert SHAPES.accepted - before >= CLEAN
    assert _found(outcome, built) == EXPECTED
    assert len(outcome.violations) == 4
    assert outcome.tally.records == CLEAN + 14


def test_process_replay_finds_every_violation(kafka_bootstrap: str, built: Built) -> None:
    """Workers reading the broker themselves report the same four violations."""
    outcome = _replay(kafka_bootstrap, built, workers=2)
    assert _found(outcome, built) == EXPECTED
    assert len(outcome.violations) == 4
