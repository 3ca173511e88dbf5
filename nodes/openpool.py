"""Open records in worker processes: the consumer's GIL-bound work on every core.

Opening a record (signature, envelope, payload decode, pydantic validation, model_dump) is
~80 us of CPU per record in a worker with ZIP-215 batch checks (~150 us with libsodium one
by one), nearly all of it Python; threads cannot share it (the GIL), processes can. Each worker
gets the picklable parts of the :class:`PipelineContext` ONCE, at start (node id, the trust
list's encoding, the decryption key's raw bytes, max skew, skipped key ids), rebuilds the
objects, then ``gc.freeze()``\\ s them. A batch goes out in chunks of raw records as tuples
(``pipeline.raw_to_wire``) and comes back as builtins (``pipeline.to_wire``): quarantine
reason and detail, skip reason, or the opened record's facts with its payload as a
JSON-ready dict. The replay check and the rules stay in the consumer (they need the
store-backed ``seen`` set). Workers verify before they decode, as ``pipeline.open_raw`` does,
each chunk's signatures in one ZIP-215 batch check (``pipeline.open_ready_many``).

A worker that dies breaks the pool: :meth:`OpenPool.open` then raises an ExchangeError
(UNAVAILABLE) after recreating the pool, so the consumer's failed round rewinds to the stored
offsets and the batch is opened again - nothing is lost, nothing committed twice. Workers
start with 'forkserver' (never 'fork': the node has threads and an event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timedelta
from typing import TypeVar

from exchange import codec
from exchange.errors import ExchangeError, Reason
from exchange.ids import NodeId
from exchange.keys import EncryptionKey
from exchange.trust import TrustList
from nodes.pipeline import (
    PipelineContext,
    RawRecord,
    RawWire,
    Ready,
    ReadyWire,
    from_wire,
    open_ready_many,
    own_message,
    raw_from_wire,
    raw_to_wire,
    to_wire,
)

#: Tasks per worker and batch: each task hand-off needs the executor's manager thread, which
#: waits for the GIL behind the event loop and the store thread, so few large tasks keep the
#: workers fed; two per worker still let results stream back while the rest is opened.
TASKS_PER_WORKER = 2
#: The smallest task worth a trip to another process.
MIN_CHUNK = 32
#: How often a batch waiting on the workers checks that every one is alive. The executor
#: notices a dead worker itself, except one killed while it writes a result: its reader
#: then waits for the rest of that result for ever (the other workers hold the pipe open).
WATCH_S = 0.5
#: After :func:`_break`, how long the executor may take to fail its futures.
BREAK_GRACE_S = 10.0

InitArgs = tuple[str, bytes, bytes | None, float, tuple[str, ...]]

_context: PipelineContext | None = None
_T = TypeVar("_T")


def _init_args(ctx: PipelineContext) -> InitArgs:
    key = None if ctx.decryption_key is None else ctx.decryption_key.private_bytes()
    return (
        str(ctx.node),
        ctx.trust.encode(),
        key,
        ctx.max_skew.total_seconds(),
        tuple(sorted(ctx.skip_key_ids)),
    )


def _init_worker(
    node: str, trust: bytes, key: bytes | None, skew: float, skip: tuple[str, ...]
) -> None:
    """In each worker, once: rebuild the pipeline context (no policies: rules run in the
    consumer), then freeze it out of the garbage collector's way."""
    global _context
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the node's to handle
    _, record = codec.decode(trust, expected="TrustList")
    _context = PipelineContext(
        node=NodeId(node),
        trust=TrustList.from_avro(record),
        decryption_key=None if key is None else EncryptionKey.from_bytes(key),
        policies={},
        max_skew=timedelta(seconds=skew),
        skip_key_ids=frozenset(skip),
    )
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)  # a chunk's short-lived objects: collect less often
    parent = multiprocessing.parent_process()
    if parent is not None:  # a SIGKILLed node must not leave its workers behind
        threading.Thread(
            target=_exit_with, args=(parent.sentinel,), name="parent-watch", daemon=True
        ).start()


def _exit_with(sentinel: int) -> None:
    """In a worker: exit as soon as the node that started it is gone (killed, crashed)."""
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _open_chunk(chunk: list[RawWire], now: datetime) -> list[ReadyWire]:
    """In a worker: open each record of ``chunk``, its signatures in one batch check."""
    ctx = _context
    assert ctx is not None, "worker not initialised"
    return [to_wire(r) for r in open_ready_many([raw_from_wire(w) for w in chunk], ctx, now)]


def _pid() -> int:
    return os.getpid()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed and not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: signal 0 tells whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _dead_workers(executor: ProcessPoolExecutor) -> list[int]:
    processes = getattr(executor, "_processes", None) or {}
    return [pid for pid in list(processes) if not _alive(pid)]


def _break(executor: ProcessPoolExecutor) -> None:
    """Make ``executor`` notice that it is broken: kill its other workers and close this
    process's end of the result pipe, so its reader meets the end of the pipe and fails
    every pending future with BrokenProcessPool (and its thread ends)."""
    for pid in list(getattr(executor, "_processes", None) or {}):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    queue = getattr(executor, "_result_queue", None)
    writer = getattr(queue, "_writer", None)
    if writer is not None:
        with contextlib.suppress(OSError):
            writer.close()


async def _watched(executor: ProcessPoolExecutor, future: asyncio.Future[_T]) -> _T:
    """``await future`` (a task of ``executor``), raising BrokenProcessPool when one of
    the executor's workers is found dead, even where the executor itself would hang."""
    broken_at: float | None = None
    loop = asyncio.get_running_loop()
    while True:
        done, _ = await asyncio.wait({future}, timeout=WATCH_S)
        if done:
            return future.result()
        if broken_at is None:
            dead = _dead_workers(executor)
            if dead:
                _break(executor)
                broken_at = loop.time()
        elif loop.time() - broken_at > BREAK_GRACE_S:
            raise BrokenProcessPool("a record-opening process died; its pool did not notice")


class OpenPool:
    """``processes`` worker processes opening records for one consumer."""

    def __init__(self, ctx: PipelineContext, processes: int) -> None:
        if processes < 1:
            raise ValueError("an open pool needs at least one process")
        self.processes = processes
        self.restarts = 0
        self._init_args = _init_args(ctx)
        self._skip_ctx = ctx  # for own_message: own records are skipped here, never shipped
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        # The fork server imports the pipeline once; each worker forks from that clean,
        # thread-free process: fast to start, and the modules' pages are shared.
        context.set_forkserver_preload([__name__])
        return ProcessPoolExecutor(
            self.processes,
            mp_context=context,
            initializer=_init_worker,
            initargs=self._init_args,
        )

    async def start(self) -> list[int]:
        """Start every worker now (not at the first batch); their process ids."""
        loop = asyncio.get_running_loop()
        try:
            futures = [loop.run_in_executor(self._executor, _pid) for _ in range(self.processes)]
            return list(await asyncio.gather(*futures))
        except BrokenProcessPool as exc:
            self._restart()
            raise ExchangeError(
                Reason.UNAVAILABLE, f"record-opening processes failed to start ({exc})"
            ) from exc

    def pids(self) -> list[int]:
        """The process ids of the current workers (for tests and diagnostics)."""
        processes = getattr(self._executor, "_processes", None) or {}
        return sorted(processes)

    async def open(self, raws: Sequence[RawRecord], now: datetime) -> list[Ready]:
        """Open ``raws`` in the workers, in order. A dead worker: the pool is recreated and
        ExchangeError(UNAVAILABLE) raised, so the caller retries the batch."""
        loop = asyncio.get_running_loop()
        out: list[Ready | None] = [own_message(r, self._skip_ctx) for r in raws]
        todo = [i for i, skipped in enumerate(out) if skipped is None]
        size = max(MIN_CHUNK, -(-len(todo) // (self.processes * TASKS_PER_WORKER)))
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        futures: list[asyncio.Future[list[ReadyWire]]] = []
        executor = self._executor
        try:
            for chunk in chunks:
                wire = [raw_to_wire(raws[i]) for i in chunk]
                futures.append(loop.run_in_executor(executor, _open_chunk, wire, now))
            for chunk, future in zip(chunks, futures, strict=True):
                opened: list[ReadyWire] = await _watched(executor, future)
                for i, w in zip(chunk, opened, strict=True):
                    out[i] = from_wire(raws[i], w, now)
            return [item for item in out if item is not None]
        except BrokenProcessPool as exc:
            for future in futures:
                future.cancel()
            if self._executor is executor:  # not restarted already (another batch in flight)
                self._restart()
            raise ExchangeError(
                Reason.UNAVAILABLE, f"a record-opening process died ({exc}); pool restarted"
            ) from exc

    def reconfigure(self, ctx: PipelineContext) -> None:
        """New workers for ``ctx`` (a new trust list): batches in flight finish on the old."""
        self._init_args = _init_args(ctx)
        self._skip_ctx = ctx
        old, self._executor = self._executor, self._new_executor()
        old.shutdown(wait=False, cancel_futures=False)

    def _restart(self) -> None:
        old, self._executor = self._executor, self._new_executor()
        self.restarts += 1
        old.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
