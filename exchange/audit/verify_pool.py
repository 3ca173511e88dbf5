"""Verification of raw records on every core, reduced to compact digests.

Signature verification is the replay's cost, so it runs in a pool of worker
*processes*, one per core by default. Each worker gets the signed trust list once, at
start (it verifies and parses it itself). Two ways in:

- :meth:`VerifyPool.submit_range` (Kafka, process pools): the worker reads a piece of
  a partition itself (:class:`~exchange.audit.reader.RangeReader`, one consumer per
  worker, kept between pieces; the next fetch is in flight while a batch is
  verified), verifies it and returns only its :data:`~exchange.audit.digest.Digest`.
  The main process plans the offsets, merges digests and runs the chain checks: it no
  longer reads Kafka nor pickles ~1.2 KB raw values to the workers.
- :meth:`VerifyPool.submit_digest` (an archive, thread pools, ``workers=0``): batches of
  raw ``(topic, partition, offset, timestamp, key, value)`` tuples go in, a digest
  comes out. :meth:`VerifyPool.submit` (one summary per record) stays for tests.

Measured 2026-11-28 on the project's 2 shared cores (other work ran beside, so
wall-clock rates swung by up to 2x between runs; ratios are taken within one run).
A/B script alternating this design with the previous one (the main process read
Kafka, pickled raw values to the workers and kept a summary per record) on one
history, ratio to the bare all-core verify rate measured just before: 200k records,
4 rounds, medians 0.62 before and 0.62 after; 50k records, 6 rounds, 0.58 -> 0.63 and
0.59 -> 0.63. CPU time a record (40k, 3 rounds each): main process 9-11 us before,
3-3.6 us after (about 1 us of it per record, the rest planning); workers 90-92 us
before, 91-97 us after (reading included): the main process's saving is mostly
spent again on Kafka fetch and parse in the workers, so on 2 cores throughput is
unchanged at full scale, while the main process, which bounded the old design near
100k msgs/s on a larger machine, now costs about a tenth as much. One core alone,
bare libsodium verify is about 60 us a message and this worker path was about 86-91 us
(verify_record about 80: Envelope decoding about 9 us, SHA-256, checks; Kafka fetch
and parse with CRC checks about 4 us; digest and counts about 3 us): a ceiling near
0.67-0.69 before the broker and the main process take their share. Since then
(2026-11-28, evening): the work around the signature check went from 15 to 11 us a
record (hand decoders read common shapes inline, NamedTuples for the per-record
objects), the reader thread gave way to a loop run between batches (2-4 us), and the
pieces shrink towards the end (:func:`~exchange.audit.replay.chunks`), and fetches
bring up to 4 MiB (the broker's share fell from 2.4-3.6 to 1.7-1.9 us a record). The
bench went from 0.62-0.67 to 0.70-0.76 (median 0.72 over five full runs, the machine's
bare rate itself moving between 27k and 33k msgs/s).

Since 2026-11-30 each worker verifies a batch's signatures in one ZIP-215 batch check
(:func:`~exchange.audit.digest.check_many`, ed25519-zebra, GIL released) instead of one
libsodium check a record, and reads the usual record shape in place
(:mod:`~exchange.audit.fastpath`; every other record, and every refusal, through the
full path as before). A worker's CPU a record fell from 28-31 to 23-24 us (paired runs,
60k records): the batch check about 10, Kafka read and parse about 4.5, the in-place
read and checks about 4.5, SHA-256 and the digest about 2; ``make bench`` prints these
stages (``audit stage: ...``).

Processes, not threads: the batch check releases the GIL, but the Python work
around each verification (parsing, Envelope decoding, the checks) holds it.
``mode="thread"`` stays for the comparison the benchmark prints (the main process
then reads); ``workers=0`` verifies inline (small replays and tests).

Workers come from a ``forkserver`` (preloaded with this module), never a plain fork:
the caller may already run threads (asyncio, aiokafka), which fork does not survive.
Each worker freezes what it imported (``gc.freeze()``) so collections skip it, and
collects young objects less often.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime
from multiprocessing.util import Finalize
from typing import Any, Literal

from exchange.audit.checks import RecordSummary
from exchange.audit.digest import (
    CHUNK,
    Digest,
    DigestBuilder,
    Judge,
    check,
    check_many,
    digest_batch,
)
from exchange.audit.reader import Range, RangeReader, RangeSource, RawRecord
from exchange.audit.tally import Tally
from exchange.errors import ExchangeError
from exchange.seal import Verified
from exchange.trust import TrustHistory, TrustList

Mode = Literal["process", "thread"]

_trust: Judge | None = None
_now: datetime | None = None
_reader: RangeReader | None = None


def judge_of(
    signed_trust: bytes, root_public_key: bytes, history: Sequence[tuple[int, bytes]] = ()
) -> Judge:
    """The list to judge records by: ``signed_trust`` alone, or with ``history`` (append
    time ms, signed list) a :class:`TrustHistory` (each verified against the root)."""
    trust = TrustList.from_signed(signed_trust, root_public_key)
    if not history:
        return trust
    lists = [(ms, TrustList.from_signed(data, root_public_key)) for ms, data in history]
    if len(lists) == 1:
        return lists[0][1]
    return TrustHistory(lists)


def summarize(record: RawRecord, trust: Judge, now: datetime) -> RecordSummary:
    """Verify one record (see :func:`exchange.seal.verify_record`) and summarize it."""
    return _summary(record, check(record, trust, now))


def _summary(record: RawRecord, v: Verified | RecordSummary) -> RecordSummary:
    """The summary of ``record`` verified as ``v``."""
    if isinstance(v, RecordSummary):
        return v
    e = v.envelope
    return RecordSummary(
        record[0],
        record[1],
        record[2],
        record[3],
        e.sender,
        e.message_type.value,
        str(e.message_id),
        e.sequence,
        e.previous_hash,
        v.envelope_hash,
        tuple(e.recipients),
        e.handling.tlp.value,
        v.key_id,
        wire_version=e.version,
    )


#: A verified batch: one summary per record, in order, as plain tuples (a NamedTuple
#: pickles five times slower; ``RecordSummary._make`` rebuilds them), and the batch's counts.
Packed = tuple[list[tuple[Any, ...]], Tally]


def verify_batch(batch: Sequence[RawRecord], trust: Judge, now: datetime) -> Packed:
    """Verify and summarize a batch, counted here (off the main process); the signatures
    in one batch check per :data:`~exchange.audit.digest.CHUNK`."""
    summaries = [
        _summary(r, v)
        for start in range(0, len(batch), CHUNK)
        for r, v in zip(
            batch[start : start + CHUNK],
            check_many(batch[start : start + CHUNK], trust, now),
            strict=True,
        )
    ]
    tally = Tally()
    tally.add_many(summaries)
    return [tuple(s) for s in summaries], tally


def _init_worker(
    signed_trust: bytes,
    root_public_key: bytes,
    now: datetime,
    history: Sequence[tuple[int, bytes]] = (),
) -> None:
    global _trust, _now
    _trust = judge_of(signed_trust, root_public_key, history)
    _now = now
    gc.freeze()  # what the worker imported stays: later collections need not walk it
    # A piece's records are short-lived but many: collect young objects less often (as
    # the node's opening workers do); about 1 us a record less, measured with the
    # signature check stubbed out.
    gc.set_threshold(50_000, 20, 100)


def _state() -> tuple[Judge, datetime]:
    trust, now = _trust, _now
    if trust is None or now is None:
        raise RuntimeError("verification worker used before its initializer ran")
    return trust, now


def _verify_batch(batch: Sequence[RawRecord]) -> Packed:
    return verify_batch(batch, *_state())


def _digest_batch(batch: Sequence[RawRecord]) -> Digest:
    return digest_batch(batch, *_state())


class RelayedError(Exception):
    """An :class:`ExchangeError` raised in a worker, carried back field by field.

    (ExchangeError subclasses do not survive pickling with their reason and detail.)
    """

    def error(self) -> ExchangeError:
        """The error as it was raised in the worker."""
        cls, reason, detail, field = self.args
        err: ExchangeError = cls.__new__(cls)
        ExchangeError.__init__(err, reason, detail, field=field)
        return err


def _close_reader() -> None:
    global _reader
    if _reader is not None:
        _reader.close()
        _reader = None


def _digest_range(source: RangeSource, where: Range) -> Digest:
    """Read a range of a partition (a consumer kept per worker) and verify it."""
    global _reader
    builder = DigestBuilder(*_state())
    try:
        if _reader is None or _reader.source != source:
            if _reader is None:  # once: close the consumer when the worker exits
                Finalize(None, _close_reader, exitpriority=10)
            else:
                _close_reader()
            _reader = RangeReader(source)
        for batch in _reader.batches(*where):
            builder.add_many(batch)
    except ExchangeError as exc:
        raise RelayedError(type(exc), exc.reason, exc.detail, exc.field) from None
    return builder.digest()


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class VerifyPool:
    """Verifies batches on ``workers`` processes (or threads); ``workers=0``: inline.

    ``signed_trust`` is the trust-list file's bytes and ``root_public_key`` the raw
    root key; every worker verifies the list itself. ``history``: every list published
    (append time ms, signed bytes), each record then judged against the one in force at
    its append time. ``now`` is the replay time used to
    judge records from the future. Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        signed_trust: bytes,
        root_public_key: bytes,
        *,
        now: datetime,
        workers: int | None = None,
        mode: Mode = "process",
        history: Sequence[tuple[int, bytes]] = (),
    ) -> None:
        self.workers = default_workers() if workers is None else workers
        self.mode = mode
        self._trust = judge_of(signed_trust, root_public_key, history)
        self._now = now
        self._executor: Executor | None = None
        if self.workers > 0 and mode == "process":
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            self._executor = ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(signed_trust, root_public_key, now, tuple(history)),
            )
        elif self.workers > 0:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="audit-verify")

    @property
    def trust(self) -> TrustList:
        """The trust list the records are verified against (the newest, with a history)."""
        return self._trust.latest if isinstance(self._trust, TrustHistory) else self._trust

    def submit(self, batch: Sequence[RawRecord]) -> Future[Packed]:
        """Verify a batch; the future's result is :data:`Packed`."""
        if self._executor is None:
            done: Future[Packed] = Future()
            done.set_result(verify_batch(batch, self._trust, self._now))
            return done
        if self.mode == "thread":
            return self._executor.submit(verify_batch, batch, self._trust, self._now)
        return self._executor.submit(_verify_batch, batch)

    def submit_digest(self, batch: Sequence[RawRecord]) -> Future[Digest]:
        """Verify a batch; the future's result is its :data:`~exchange.audit.digest.Digest`."""
        if self._executor is None:
            done: Future[Digest] = Future()
            done.set_result(digest_batch(batch, self._trust, self._now))
            return done
        if self.mode == "thread":
            return self._executor.submit(digest_batch, batch, self._trust, self._now)
        return self._executor.submit(_digest_batch, batch)

    @property
    def reads_ranges(self) -> bool:
        """Whether the workers read from Kafka themselves (:meth:`submit_range`): processes."""
        return self._executor is not None and self.mode == "process"

    def submit_range(self, source: RangeSource, where: Range) -> Future[Digest]:
        """A worker reads ``where`` from ``source`` itself and verifies it.

        Only when :attr:`reads_ranges`. The future raises :class:`RelayedError` for an
        ExchangeError met in the worker (``.error()`` is that error).
        """
        if self._executor is None or self.mode != "process":
            raise RuntimeError("only a process pool reads ranges itself")
        return self._executor.submit(_digest_range, source, where)

    def close(self) -> None:
        """Stop the workers (pending batches are cancelled)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> VerifyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
