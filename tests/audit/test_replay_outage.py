"""A broker that stops in the middle of a replay ends it with a connection error.

Runs its own broker (the ``private_broker`` fixture) so it can stop it. The verification
workers read their pieces from Kafka themselves; the test stops the broker once the
first piece is verified. The replay must then fail with TransientError (which the CLI
turns into exit 2) within its timeout: never hang, and never return a report as if the
history had been read.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchange.audit.reader import KafkaHistoryReader, RangeReader, RangeSource
from exchange.audit.replay import replay_kafka
from exchange.audit.verify_pool import VerifyPool
from exchange.bus import KafkaSettings
from exchange.errors import Reason, TransientError
from exchange.ids import Topic
from tests.audit.history import audit_federation
from tests.helpers.broker import LocalBroker, create_topics, produce_many, unique_prefix

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Enough records that the first pieces in flight (2 per worker) leave most unread.
N = 30_000


async def test_broker_stopping_mid_replay_is_a_connection_error(
    tmp_path: Path, private_broker: LocalBroker
) -> None:
    """Workers that lose the broker mid-replay end it with UNAVAILABLE, not with a report."""
    fed = audit_federation(tmp_path, ("FR",))
    topic = Topic(f"{unique_prefix()}.alerts.v1")
    await create_topics(private_broker.bootstrap, [topic], 3)
    now = datetime.now(UTC)
    fr = fed.sender("FR")
    sealed = [fr.alert(now, topic=topic) for _ in range(N)]
    await produce_many(private_broker.bootstrap, topic, [(s.key, s.value) for s in sealed])

    reader = KafkaHistoryReader(
        KafkaSettings(bootstrap_servers=private_broker.bootstrap, client_id="audit-outage"),
        [topic],
        timeout_s=3.0,
    )
    done_when_stopped: list[int] = []

    def stop_at_first_piece(done: int) -> None:
        if not done_when_stopped:
            done_when_stopped.append(done)
            private_broker.stop()  # blocks the replay's loop while the broker goes down

    trust_bytes, root = fed.trust_path.read_bytes(), fed.root.public_bytes
    with (
        VerifyPool(trust_bytes, root, now=now, workers=2) as pool,
        pytest.raises(TransientError) as info,
    ):
        await asyncio.wait_for(
            replay_kafka(reader, pool, anchored=False, progress=stop_at_first_piece), 120
        )
    assert done_when_stopped
    assert 0 < done_when_stopped[0] < N
    assert info.value.reason is Reason.UNAVAILABLE
    assert info.value.retriable


async def test_range_reader_closes_cleanly_after_the_broker_is_gone(
    tmp_path: Path, private_broker: LocalBroker
) -> None:
    """A worker's reader that lost its broker mid-range still closes without raising.

    (aiokafka's stop could end in the CancelledError of a fetch it cancelled itself,
    which escaped as a traceback when the verification worker exited.)
    """
    fed = audit_federation(tmp_path, ("FR",))
    topic = Topic(f"{unique_prefix()}.alerts.v1")
    await create_topics(private_broker.bootstrap, [topic], 1)
    fr = fed.sender("FR")
    now = datetime.now(UTC)
    sealed = [fr.alert(now, topic=topic) for _ in range(50)]
    await produce_many(private_broker.bootstrap, topic, [(s.key, s.value) for s in sealed])
    settings = KafkaSettings(bootstrap_servers=private_broker.bootstrap, client_id="audit-close")

    def read_then_lose_the_broker() -> tuple[int, TransientError | None]:
        reader = RangeReader(RangeSource(settings, timeout_s=2.0, batch_records=10))
        got, failed = 0, None
        batches = reader.batches(topic, 0, 0, 10_000)  # past the end: still reading when it stops
        try:
            got = len(next(batches))
            private_broker.stop()
            for batch in batches:
                got += len(batch)
        except TransientError as exc:
            failed = exc
        finally:
            reader.close()  # must not raise
        return got, failed

    got, failed = await asyncio.to_thread(read_then_lose_the_broker)
    assert 10 <= got <= 50
    assert failed is not None
    assert failed.reason is Reason.UNAVAILABLE
