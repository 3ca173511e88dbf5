"""A Kafka outage delays publishing and consuming; it never loses or doubles an alert.

Runs its own broker (the ``private_broker`` fixture, a
:class:`tests.helpers.broker.LocalBroker` on free ports) so it can stop and start it;
FR and DE run in this test's event loop with their real SQLite stores.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from exchange.topics import TopicKind
from nodes.daemon import Node
from tests.helpers.broker import LocalBroker, unique_prefix
from tests.helpers.federation import Federation
from tests.node.helpers import (
    alert_items,
    count_stored,
    fr_and_de,
    node_store,
    outbox_counts,
    outbox_ids,
    quarantine_of,
    stored_ids,
    wait_for,
)

#: DE's max_skew_s in the outage test: shorter than the outage, longer than a busy
#: machine's delay between signing and appending.
SKEW_S = 20.0

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Feeder:
    """Enqueues alerts into FR's outbox, ``wave`` every ``pause`` s, until :meth:`stop`."""

    def __init__(self, fed: Federation, wave: int = 20, pause: float = 0.1) -> None:
        self.fed, self.wave, self.pause = fed, wave, pause
        self.count = 0
        self._stop = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with node_store(self.fed, "FR") as store:
            while not self._stop.is_set():
                await store.enqueue(alert_items(self.fed, "FR", self.wave, start=self.count))
                self.count += self.wave
                await asyncio.sleep(self.pause)

    async def stop(self) -> int:
        """Stop after the current wave; returns how many alerts were enqueued."""
        self._stop.set()
        await self.task
        return self.count


async def test_broker_stopped_mid_stream_loses_nothing(
    tmp_path: Path, private_broker: LocalBroker
) -> None:
    """FR keeps enqueuing while the broker is down; once it is back DE stores every alert once.

    The outage outlasts DE's clock skew (20 s here): the batch FR had handed to its
    producer when the broker went away is abandoned after ack_timeout_s (3 s here; the
    idempotent producer would retry it for ever and deliver it stale) and signed again with
    a fresh time after reseal_after_s (5 s here), or DE would refuse it as backdated."""
    fed = fr_and_de(
        tmp_path,
        private_broker.bootstrap,
        unique_prefix(),
        tables={
            "kafka": {"request_timeout_ms": 5000},
            "publisher": {
                "backoff_initial_ms": 100,
                "backoff_max_ms": 1000,
                "reseal_after_s": 5,
                "ack_timeout_s": 3,
            },
        },
        per_node={"DE": {"consumer": {"max_skew_s": SKEW_S}}},
    )
    fr, de = Node(fed.config("FR")), Node(fed.config("DE"))
    await fr.start()
    await de.start()
    feeder = Feeder(fed)  # one stream, before, during and after the outage
    try:
        await wait_for(lambda: count_stored(fed, "DE") >= 200, within_s=60, what="DE storing")
        await asyncio.to_thread(private_broker.stop)
        stopped = time.monotonic()
        at_stop = feeder.count
        await wait_for(
            lambda: feeder.count >= at_stop + 400, within_s=30, what="FR enqueuing in the outage"
        )
        await wait_for(  # the scenario: an outage longer than DE's skew
            lambda: time.monotonic() - stopped > SKEW_S + 5,
            within_s=SKEW_S + 60,
            what="the outage to outlast DE's clock skew",
        )
        during = outbox_counts(fed, "FR")  # what was enqueued in the outage waits there
        assert during.get("pending", 0) + during.get("signed", 0) >= 400, during
        await asyncio.to_thread(private_broker.start)
        await wait_for(
            lambda: outbox_counts(fed, "FR").get("sent", 0) >= during.get("sent", 0) + 400,
            within_s=120,
            what="FR publishing again after the outage",
        )
        total = await feeder.stop()
        await wait_for(
            lambda: outbox_counts(fed, "FR") == {"sent": total},
            within_s=120,
            what="FR catching up after the outage",
        )
        await wait_for(
            lambda: count_stored(fed, "DE") >= total, within_s=60, what="DE storing everything"
        )
    finally:
        await feeder.stop()
        await fr.stop()
        await de.stop()
    sent = outbox_ids(fed, "FR")["sent"]
    stored = await stored_ids(fed, "DE", fed.topic(TopicKind.ALERTS))
    assert len(stored) == total
    assert set(stored) == set(sent)
    # A batch whose acknowledgement the outage swallowed is sent again with the same bytes:
    # the copy is quarantined as replayed, never stored twice and never anything else.
    quarantined = await quarantine_of(fed, "DE")
    assert {q.reason for q in quarantined} <= {"replayed"}, [q.detail for q in quarantined][:3]
    assert {q.message_id for q in quarantined} <= set(sent)
