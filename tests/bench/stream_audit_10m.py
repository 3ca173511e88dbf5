"""A whole replay of a real 10M-record history, and the auditor's peak memory (issue #16).

``python -m tests.bench.stream_audit_10m`` (not part of ``make bench``: about 20 minutes on
a 2-core machine and 12 GB of broker disk; ``AUDIT_RECORDS`` sets the count). Two
processes each seal the whole hash-chained alert chains of two of the four members and
write them to a three-partition topic in slices. The four members write equal shares, or,
with ``AUDIT_DOMINANT=0.9`` (a fraction), the first writes that share of the records and
the other three the rest (one chain far longer than the others: the shape that tests
whether the end of a replay reads a whole chain back), each slice sealed at the time it is
written, so nothing holds the history in memory and no record's time is stale. Then
``replay_kafka`` with the process pool and the default ``RUN_RECORDS`` replays it in a
spawned child that reports its peak resident set (``VmHWM``), as
:mod:`tests.bench.bench_audit_memory` does at smaller scales.

Measured 2026-11-30: 10M records sealed and written in 726 s, replayed in 140 s, 0
violations, main process peak 869 MB (56 MB before), when the end read chains whole.
``AUDIT_RECORDS=3000000 AUDIT_DOMINANT=0.9`` (a 2.7M-record chain), the same day: peak
607 MB reading chains whole; 322 MB reading them in windows, reached before the end's
checks (the replay reports that peak apart), replayed in 96 s and 73 s. At 2M records
(a 1.8M-record chain), in windows: 341 MB.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RECORDS = int(os.environ.get("AUDIT_RECORDS", "10000000"))
DOMINANT = float(os.environ.get("AUDIT_DOMINANT", "0"))
SLICE = 20_000


def _seal_and_send(
    bootstrap: str, key_files: dict[str, str], topic: str, counts: dict[str, int]
) -> int:
    """In a worker: seal ``counts[sender]`` chained alerts per sender and write them."""
    from aiokafka import AIOKafkaProducer

    from exchange.chain import ChainState
    from exchange.ids import NodeId, Topic
    from exchange.keys import SigningKey
    from exchange.seal import seal
    from tests.helpers.federation import handling, make_alert

    style = handling()
    template = make_alert(datetime.now(UTC))

    async def go() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", max_batch_size=1_048_576, linger_ms=20
        )
        await producer.start()
        try:
            for sender, n in counts.items():
                signer = SigningKey.load(Path(key_files[sender]))
                chain = ChainState()
                done = 0
                while done < n:
                    now = datetime.now(UTC)  # each slice sealed at the time it is written
                    sent: list[Any] = []
                    for _ in range(min(SLICE, n - done)):
                        s = seal(
                            template.model_copy(update={"alert_id": uuid.uuid4()}),
                            signer=signer,
                            sender=NodeId(sender),
                            topic=Topic(topic),
                            link=chain.next(Topic(topic)),
                            handling=style,
                            now=now,
                        )
                        chain.advance(Topic(topic), s.envelope_hash)
                        sent.append(await producer.send(topic, s.value, key=s.key))
                    await asyncio.gather(*sent)
                    done += len(sent)
        finally:
            await producer.stop()

    asyncio.run(go())
    return sum(counts.values())


def _shares(members: tuple[str, ...]) -> list[dict[str, int]]:
    """Each writer process's records per member: equal shares, or one dominant member
    (its chain written by one process, the three others' by the other)."""
    if DOMINANT > 0:
        top = int(RECORDS * DOMINANT)
        rest = (RECORDS - top) // 3
        return [
            {members[0]: top},
            {members[1]: rest, members[2]: rest, members[3]: RECORDS - top - 2 * rest},
        ]
    per = RECORDS // len(members)
    return [
        {members[0]: per, members[2]: per},
        {members[1]: per, members[3]: RECORDS - 3 * per},
    ]


async def main() -> None:
    from exchange.audit.checks import RUN_RECORDS
    from exchange.ids import NodeId
    from tests.bench.bench_audit import MEMBERS
    from tests.bench.bench_audit_memory import _in_child, _replay_child
    from tests.helpers.broker import acquire_broker, create_topics
    from tests.helpers.federation import make_federation

    lease = acquire_broker()
    try:
        prefix = f"a10m{uuid.uuid4().hex[:8]}"
        topic = f"{prefix}.alerts.v1"
        with tempfile.TemporaryDirectory(prefix="audit10m-") as tmp:
            fed = make_federation(Path(tmp), MEMBERS, datetime.now(UTC), prefix=prefix)
            keys = {m: str(fed.nodes[NodeId(m)].directory / "signing.key") for m in MEMBERS}
            await create_topics(lease.bootstrap, [topic], 3)
            shares = _shares(MEMBERS)
            started = time.perf_counter()
            with ProcessPoolExecutor(2) as pool:
                written = sum(
                    pool.map(
                        _seal_and_send,
                        [lease.bootstrap] * 2,
                        [keys] * 2,
                        [topic] * 2,
                        shares,
                    )
                )
            print(
                f"sealed and written {written:,} records in {time.perf_counter() - started:.0f} s"
            )
            r = await asyncio.to_thread(
                _in_child,
                _replay_child,
                lease.bootstrap,
                topic,
                fed.trust_bytes,
                fed.root.public_bytes,
                RECORDS,
                RUN_RECORDS,
            )
        print(
            f"replayed {r['records']:,} records in {r['elapsed_s']:.0f} s, {r['violations']}"
            f" violations; main process peak RSS {r['peak'] / 1e6:.0f} MB"
            f" ({r['before'] / 1e6:.0f} MB before, {r['peak_fed'] / 1e6:.0f} MB before its"
            f" end's checks), RUN_RECORDS {RUN_RECORDS:,},"
            f" longest chain {max(n for s in shares for n in s.values()):,}"
        )
    finally:
        lease.release()


if __name__ == "__main__":
    asyncio.run(main())
