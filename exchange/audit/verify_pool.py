"""Verification of raw records on every core, reduced to :class:`RecordSummary` tuples.

Signature verification is the replay's cost (about 43 us a message with libsodium,
PERFORMANCE.md), so it runs in a pool of worker *processes*, one per core by default.
Each worker gets the signed trust list once, at start (it verifies and parses it
itself); batches of raw ``(topic, partition, offset, timestamp, key, value)`` tuples go
in, compact summaries (plain tuples of str/int/bytes) and the batch's counts come out,
so pickling stays cheap. The main process only reads and runs the chain checks.

Processes, not threads: PyNaCl releases the GIL inside libsodium, but the Python work
around each verification (parsing the SignedEnvelope, decoding the Envelope with
fastavro, building the summary; about 20 us a message) and the main process's reading
and checks (about 15 us) hold it, which caps a thread pool near 30k msgs/s whatever the
core count; processes have no such cap and cost only about 3 us a message of pickling.
On this project's shared 2-core machine the two are close (tests/bench/bench_audit.py
measures both in one run): processes were faster in 4 runs of 5, threads in one, the
machine's load from other work varying more than the difference. ``mode="thread"``
stays for that comparison; ``workers=0`` verifies inline (small replays and tests).

Workers come from a ``forkserver`` (preloaded with this module), never a plain fork:
the caller may already run threads (asyncio, aiokafka), which fork does not survive.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime
from typing import Any, Literal

from exchange.audit.checks import RecordSummary
from exchange.audit.reader import RawRecord
from exchange.audit.tally import Tally
from exchange.codec import decode_signed
from exchange.envelope import decode_envelope
from exchange.errors import ExchangeError, Reason
from exchange.seal import verify_record
from exchange.trust import TrustList

Mode = Literal["process", "thread"]

_trust: TrustList | None = None
_now: datetime | None = None


def _claimed(value: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """(sender, message type, message id, key id) as a refused record claims them, if legible."""
    try:
        envelope_bytes, _, key_id = decode_signed(value)
    except Exception:  # illegible: nothing is claimed
        return None, None, None, None
    try:
        env = decode_envelope(envelope_bytes)
    except Exception:  # illegible envelope: only the key id is claimed
        return None, None, None, key_id
    return env.sender, env.message_type.value, str(env.message_id), key_id


def summarize(record: RawRecord, trust: TrustList, now: datetime) -> RecordSummary:
    """Verify one record (see :func:`exchange.seal.verify_record`) and summarize it."""
    topic, partition, offset, ts, key, value = record
    if value is None:
        return RecordSummary(
            topic,
            partition,
            offset,
            ts,
            error_reason=Reason.MALFORMED.value,
            error_detail="record has no value (a tombstone)",
        )
    try:
        v = verify_record(value, topic=topic, key=key, trust=trust, now=now)
    except ExchangeError as exc:
        reason = exc.reason.value
        detail = f"{exc.field}: {exc.detail}" if exc.field else exc.detail
    except Exception as exc:  # one odd record must not stop an audit: report it instead
        reason = Reason.MALFORMED.value
        detail = f"verification failed unexpectedly: {type(exc).__name__}: {exc}"
    else:
        e = v.envelope
        return RecordSummary(
            topic,
            partition,
            offset,
            ts,
            e.sender,
            e.message_type.value,
            str(e.message_id),
            e.sequence,
            e.previous_hash,
            v.envelope_hash,
            tuple(e.recipients),
            e.handling.tlp.value,
            v.key_id,
        )
    sender, mtype, mid, key_id = _claimed(value)
    return RecordSummary(
        topic,
        partition,
        offset,
        ts,
        sender=sender,
        message_type=mtype,
        message_id=mid,
        key_id=key_id,
        error_reason=reason,
        error_detail=detail,
    )


#: A verified batch: one summary per record, in order, as plain tuples (a NamedTuple
#: pickles five times slower; ``RecordSummary._make`` rebuilds them), and the batch's counts.
Packed = tuple[list[tuple[Any, ...]], Tally]


def verify_batch(batch: Sequence[RawRecord], trust: TrustList, now: datetime) -> Packed:
    """Verify and summarize a batch, counted here (off the main process)."""
    summaries = [summarize(r, trust, now) for r in batch]
    tally = Tally()
    tally.add_many(summaries)
    return [tuple(s) for s in summaries], tally


def _init_worker(signed_trust: bytes, root_public_key: bytes, now: datetime) -> None:
    global _trust, _now
    _trust = TrustList.from_signed(signed_trust, root_public_key)
    _now = now


def _verify_batch(batch: Sequence[RawRecord]) -> Packed:
    trust, now = _trust, _now
    if trust is None or now is None:
        raise RuntimeError("verification worker used before its initializer ran")
    return verify_batch(batch, trust, now)


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class VerifyPool:
    """Verifies batches on ``workers`` processes (or threads); ``workers=0``: inline.

    ``signed_trust`` is the trust-list file's bytes and ``root_public_key`` the raw
    root key; every worker verifies the list itself. ``now`` is the replay time used to
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
    ) -> None:
        self.workers = default_workers() if workers is None else workers
        self.mode = mode
        self._trust = TrustList.from_signed(signed_trust, root_public_key)
        self._now = now
        self._executor: Executor | None = None
        if self.workers > 0 and mode == "process":
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            self._executor = ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(signed_trust, root_public_key, now),
            )
        elif self.workers > 0:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="audit-verify")

    @property
    def trust(self) -> TrustList:
        """The trust list the records are verified against."""
        return self._trust

    def submit(self, batch: Sequence[RawRecord]) -> Future[Packed]:
        """Verify a batch; the future's result is :data:`Packed`."""
        if self._executor is None:
            done: Future[Packed] = Future()
            done.set_result(verify_batch(batch, self._trust, self._now))
            return done
        if self.mode == "thread":
            return self._executor.submit(verify_batch, batch, self._trust, self._now)
        return self._executor.submit(_verify_batch, batch)

    def close(self) -> None:
        """Stop the workers (pending batches are cancelled)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> VerifyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
