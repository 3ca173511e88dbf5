"""The auditor's peak memory as history grows: the checks' state, and a whole replay.

Each measurement runs in a fresh process (``spawn``), which reports its peak resident
set (``VmHWM`` of ``/proc/self/status``: ``ru_maxrss`` would carry the parent's size
across the spawn's exec), its resident set just before the work (``VmRSS``) and its
peak when everything is read, just before the end's checks (``ChainChecker.finish``);
the figure is the peak, and "bytes a record" is (peak - before) / records.

- **The chain checks alone, at full scale** (no broker, no signatures): synthetic
  verified records of 27 senders on two topics, in 1,000-record blocks as the
  verification workers send them, shuffled within each 50k window (chains span
  partitions), ``ctx.n(10_000_000)`` records: 10M at ``BENCH_SCALE=1``. Once with the
  default ``RUN_RECORDS`` (columns move to scratch files a run at a time), once more
  with one sender writing 90% of the records on one topic (a 9M-record chain at 10M:
  1 GB of columns, which the end of a replay read back whole before it read chains in
  windows), and once with everything held in memory (``RUN_RECORDS`` past the record
  count) at ``min(records, 2M)``.
- **A whole replay of a history on the broker**: validly signed, hash-chained
  OffenceAlerts of four members (``tests.bench.bench_audit.make_history``) written to
  a three-partition topic, replayed by ``replay_kafka`` with the process pool; the
  figure is the main process's peak. ``ctx.n(10_000_000)`` records as well, but sealing
  and verifying real records costs minutes per million on this machine: run it at
  ``BENCH_SCALE=0.02`` (200k) while developing; ``BENCH_AUDIT_REPLAY_SCALE`` sets its
  scale apart from the checks' (e.g. ``BENCH_SCALE=1 BENCH_AUDIT_REPLAY_SCALE=0.05``;
  0 skips it). The replay holds a tenth of its records at a time (``RUN_RECORDS``), so
  that a run of minutes shows the bound a 10M replay has with the default million;
  then once with everything in memory, for the ratio; then a history where one member
  wrote 90% of the records, at a tenth of its records a run and at the default run
  (or all its records, when fewer).

The 10M estimate prints its method: the one-member history's peak with the default
run of a million records (at ``BENCH_AUDIT_REPLAY_SCALE=0.1`` and more; below, with
all its records a run, plus the rest of a default run at what one more record in a run
costs *as measured*: the slope between its two run sizes, or the all-in-memory cost a
record, whichever is more), plus 8 bytes a record beyond this replay's records (the
volume chart's timestamps, which still grow), plus, below two million records, one
more run at that cost: the peak comes in the second run, while the first run's freed
memory is not yet reused (measured with :mod:`tests.bench.stream_audit_10m`, one
member 90%: 221 MB at 1M records, 341 MB at 2M, 322 MB at 3M). The end's checks
hold a window of one chain (:meth:`~exchange.audit.spill.Spill.windows`), not the
longest chain, so the shares of the members do not enter it. The estimate this one
replaced left out that, before windows, the end held two chains at once (the one
checked and the one before it) and that a held record costs more than its 112 bytes
of columns; it said 503 MB where a whole 10M replay
(:mod:`tests.bench.stream_audit_10m`) peaked at 869 MB.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import resource
import tempfile
import time
from array import array
from datetime import UTC, datetime
from pathlib import Path
from random import Random
from typing import Any

from tests.bench.harness import BenchContext, Figure

FULL = 10_000_000
MEMORY_COMPARISON_MAX = 2_000_000
SENDERS = "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK"
TOPICS = ("bench.alerts.v1", "bench.indicators.v1")
WINDOW = 50_000
MB = 1e6
#: The share of the records one sender writes in the "one dominant sender" runs.
DOMINANT = 0.9


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory field, bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _rss_now() -> int:
    """This process's resident set, bytes."""
    return _status("VmRSS")


def _peak() -> int:
    """This process's peak resident set so far, bytes: ``VmHWM``, or ``ru_maxrss`` where
    it is lower (``ru_maxrss`` survives ``exec`` on Linux, so a spawned child would
    report its parent's resident set at the fork)."""
    return min(_status("VmHWM"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _blocks(n: int, dominant: float = 0.0) -> Any:
    """``n`` verified records as Blocks: 27 senders x 2 topics, linked chains, each 50k
    window of records arriving in a shuffled order of 1,000-record blocks; with
    ``dominant``, that share of the blocks is the first sender's on the first topic."""
    from exchange.audit.chains import HASH, Block

    chains = [(s, t) for s in SENDERS.split() for t in TOPICS]
    nxt = dict.fromkeys(chains, 1)
    rng = Random(7)
    made = 0
    while made < n:
        window: list[Block] = []
        for _ in range(min(WINDOW, n - made) // 1000 or 1):
            pick = 0 if rng.random() < dominant else rng.randrange(len(chains))
            sender, topic = chains[pick]
            k = min(1000, n - made)
            first = nxt[(sender, topic)]
            seqs = list(range(first, first + k))
            nxt[(sender, topic)] = first + k
            label = f"{sender}{topic}".encode()
            hashes = b"".join(hashlib.sha256(label + s.to_bytes(8, "big")).digest() for s in seqs)
            previous = (
                bytes(HASH)
                if first == 1
                else hashlib.sha256(label + (first - 1).to_bytes(8, "big")).digest()
            ) + hashes[: HASH * (k - 1)]
            mids = b"".join(hashlib.md5(label + s.to_bytes(8, "big")).digest() for s in seqs)  # noqa: S324
            window.append(
                Block(
                    sender,
                    topic,
                    array("q", seqs).tobytes(),
                    array("q", [1_700_000_000_000 + made + i for i in range(k)]).tobytes(),
                    array("q", [s % 3 for s in seqs]).tobytes(),
                    array("q", seqs).tobytes(),
                    mids,
                    previous,
                    hashes,
                    (0,) if first == 1 else (),
                )
            )
            made += k
        rng.shuffle(window)
        yield from window


def _checks_child(n: int, in_memory: bool, dominant: float, out: Any) -> None:
    """Feed ``n`` synthetic records to a ChainChecker; report memory and the outcome."""
    import exchange.audit.checks as checks

    if in_memory:
        checks.RUN_RECORDS = n + 1
    checker = checks.ChainChecker()
    before = _rss_now()
    t0 = time.perf_counter()
    for block in _blocks(n, dominant):
        checker.add_block(block)
    fed = _peak()
    violations = checker.finish()
    elapsed = time.perf_counter() - t0
    spilled = checker.spilled
    checker.close()
    out.put(
        {
            "before": before,
            "peak": _peak(),
            "peak_while_feeding": fed,
            "violations": len(violations),
            "spilled": spilled,
            "elapsed_s": elapsed,
        }
    )


def _replay_child(
    bootstrap: str, topic: str, trust: bytes, root: bytes, n: int, run_records: int, out: Any
) -> None:
    """Replay ``topic`` with the process pool; report this process's memory and the outcome."""
    import exchange.audit.checks as checks
    from exchange.audit.reader import KafkaHistoryReader
    from exchange.audit.replay import replay_kafka
    from exchange.audit.verify_pool import VerifyPool, default_workers
    from exchange.bus import KafkaSettings

    checks.RUN_RECORDS = run_records
    workers = default_workers()
    phases: dict[str, int] = {}
    finish = checks.ChainChecker.finish

    def finish_measured(self: checks.ChainChecker, *args: Any, **kw: Any) -> Any:
        phases["peak_fed"] = _peak()  # everything read and merged; the end's checks next
        return finish(self, *args, **kw)

    checks.ChainChecker.finish = finish_measured  # type: ignore[method-assign]

    async def go() -> Any:
        with VerifyPool(trust, root, now=datetime.now(UTC), workers=workers) as pool:
            for f in [pool.submit_digest([]) for _ in range(workers)]:
                f.result()
            reader = KafkaHistoryReader(
                KafkaSettings(bootstrap_servers=bootstrap, client_id="bench-audit-memory"),
                [topic],
            )
            return await replay_kafka(reader, pool, anchored=False)

    before = _rss_now()
    t0 = time.perf_counter()
    outcome = asyncio.run(go())
    out.put(
        {
            "before": before,
            "peak": _peak(),
            **phases,
            "violations": len(outcome.violations),
            "records": outcome.tally.records,
            "elapsed_s": time.perf_counter() - t0,
        }
    )


def _in_child(target: Any, *args: Any) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, out))
    proc.start()
    result: dict[str, Any] = out.get()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{target.__name__} exited with {proc.exitcode}")
    return result


def _per_record(r: dict[str, Any], n: int) -> float:
    return float(r["peak"] - r["before"]) / n


async def run(ctx: BenchContext) -> list[Figure]:
    from exchange.audit.checks import RUN_RECORDS
    from exchange.ids import NodeId
    from tests.bench.bench_audit import MEMBERS, make_history
    from tests.helpers.broker import create_topics, produce_many
    from tests.helpers.federation import make_federation

    n = ctx.n(FULL, minimum=10_000)
    small = min(n, MEMORY_COMPARISON_MAX)
    spilled = await asyncio.to_thread(_in_child, _checks_child, n, False, 0.0)
    dominant = await asyncio.to_thread(_in_child, _checks_child, n, False, DOMINANT)
    held = await asyncio.to_thread(_in_child, _checks_child, small, True, 0.0)
    for r in (spilled, dominant, held):
        if r["violations"]:
            raise RuntimeError(f"synthetic history not clean: {r}")
    share = f"one sender {DOMINANT:.0%} (a {n * DOMINANT / 1e6:g}M-record chain)"
    figures = [
        Figure(
            f"audit checks: peak RSS, {n / 1e6:g}M records, spilled a run at a time",
            spilled["peak"] / MB,
            "MB",
        ),
        Figure(
            f"audit checks: peak RSS, {n / 1e6:g}M records spilled, {share}",
            dominant["peak"] / MB,
            "MB",
            "54 chains of equal shares",
            spilled["peak"] / MB,
        ),
        Figure(
            f"audit checks: peak RSS at the end's checks, {n / 1e6:g}M records, {share}",
            dominant["peak"] / MB,
            "MB",
            "all read, before the end's checks",
            dominant["peak_while_feeding"] / MB,
        ),
        Figure(
            f"audit checks: state, {n / 1e6:g}M records spilled (peak - start) / records",
            _per_record(spilled, n),
            "B/record",
            f"all held in memory, {small / 1e6:g}M",
            _per_record(held, small),
        ),
        Figure(
            f"audit checks: peak RSS, {small / 1e6:g}M records all held in memory",
            held["peak"] / MB,
            "MB",
        ),
        Figure(
            f"audit checks: {n / 1e6:g}M records checked (spilled)",
            n / spilled["elapsed_s"],
            "records/s",
            f"{small / 1e6:g}M held in memory",
            small / held["elapsed_s"],
        ),
    ]

    scale = float(os.environ.get("BENCH_AUDIT_REPLAY_SCALE", ctx.scale))
    if scale <= 0:
        return figures
    m = max(10_000, int(FULL * scale))
    run = m // 10
    big_run = min(RUN_RECORDS, m)  # at 1M records and more: the default run, measured
    now = datetime.now(UTC)
    replays: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-audit-memory-") as tmp:
        shapes = (("equal", 0.0, (run, m + 1)), ("dominant", DOMINANT, (run, big_run)))
        for shape, top, runs in shapes:
            prefix = f"{ctx.prefix}{shape[0]}"
            fed = make_federation(Path(tmp) / shape, MEMBERS, now, prefix=prefix)
            key_files = {k: str(fed.nodes[NodeId(k)].directory / "signing.key") for k in MEMBERS}
            topic = f"{prefix}.alerts.v1"
            records = await asyncio.to_thread(
                make_history, key_files, topic, m, os.cpu_count() or 1, now, top
            )
            await create_topics(ctx.bootstrap, [topic], 3)
            await produce_many(ctx.bootstrap, topic, records)
            del records
            args = (ctx.bootstrap, topic, fed.trust_bytes, fed.root.public_bytes, m)
            for held_records in runs:
                key = shape if held_records == run else f"{shape} {held_records}"
                replays[key] = await asyncio.to_thread(
                    _in_child, _replay_child, *args, held_records
                )
    for r in replays.values():
        if r["violations"] or r["records"] != m:
            raise RuntimeError(f"bench history not clean: {r}")
    replay, replay_held = replays["equal"], replays[f"equal {m + 1}"]
    replay_dominant, replay_big_run = replays["dominant"], replays[f"dominant {big_run}"]
    # 10M, default RUN_RECORDS: the one-member history's peak with the larger run (the
    # default run itself from 1M records on: its worst case, one long chain a run,
    # sorted when spilled), plus what the rest of a default run would hold at what one
    # more record in a run costs, measured (the slope between the two run sizes), plus
    # 8 B a record beyond m (the volume chart's timestamps). The end's checks hold a
    # window, whatever the longest chain, so the same holds for any shares.
    # Below two default runs it adds one more run at that cost: the peak comes in the
    # second run, while the first run's freed memory is not yet reused (one member 90%,
    # measured with stream_audit_10m: 221 MB at 1M records, one run; 341 MB at 2M; 322 MB
    # at 3M).
    held_cost = _per_record(replay_held, m)
    slope = float(replay_big_run["peak"] - replay_dominant["peak"]) / (big_run - run)
    run_cost = max(held_cost, slope)
    second_run = RUN_RECORDS * run_cost if m < 2 * RUN_RECORDS else 0.0
    estimate = (
        replay_big_run["peak"] + (RUN_RECORDS - big_run) * run_cost + second_run + (FULL - m) * 8
    )

    held_estimate = replay_held["before"] + (replay_held["peak"] - replay_held["before"]) * (
        FULL / m
    )
    figures += [
        Figure(
            f"audit replay: main process peak RSS, {m / 1e6:g}M records on the broker,"
            f" {run / 1e6:g}M a run",
            replay["peak"] / MB,
            "MB",
            "all held in memory",
            replay_held["peak"] / MB,
        ),
        Figure(
            f"audit replay: main process peak RSS, {m / 1e6:g}M records, {run / 1e6:g}M a"
            f" run, one member {DOMINANT:.0%}",
            replay_dominant["peak"] / MB,
            "MB",
            "four equal members",
            replay["peak"] / MB,
        ),
        Figure(
            f"audit replay: main process peak RSS, {m / 1e6:g}M records, {run / 1e6:g}M a"
            f" run, one member {DOMINANT:.0%}, at the end's checks",
            replay_dominant["peak"] / MB,
            "MB",
            "all read, before the end's checks",
            replay_dominant["peak_fed"] / MB,
        ),
        Figure(
            f"audit replay: main process (peak - start) / records, {m / 1e6:g}M",
            _per_record(replay, m),
            "B/record",
            "all held in memory",
            held_cost,
        ),
        Figure(
            f"audit replay: a record more in a run, one member {DOMINANT:.0%}: peak at"
            f" {big_run / 1e6:g}M a run - at {run / 1e6:g}M, / records",
            slope,
            "B/record",
            "a record all held in memory, (peak - start) / records",
            held_cost,
        ),
        Figure(
            f"audit replay: main process peak RSS, {m / 1e6:g}M records, one member"
            f" {DOMINANT:.0%}, {big_run / 1e6:g}M a run",
            replay_big_run["peak"] / MB,
            "MB",
            f"{run / 1e6:g}M a run",
            replay_dominant["peak"] / MB,
        ),
        Figure(
            f"audit replay: 10M estimate, any shares: that peak + {run_cost:.0f} B x"
            f" ({(RUN_RECORDS - big_run) / 1e6:g}M more a run + {second_run / run_cost / 1e6:g}M"
            " a second run) + 8 B x records beyond",
            estimate / MB,
            "MB",
            "all held in memory, linear",
            held_estimate / MB,
        ),
    ]
    return figures
