"""Open records in worker processes: the consumer's GIL-bound work on every core.

Opening a record (signature, envelope, payload decode, pydantic validation, model_dump) is
~150 us of Python per record; threads cannot share it (the GIL), processes can. Each worker
gets the picklable parts of the :class:`PipelineContext` ONCE, at start (node id, the trust
list's encoding, the decryption key's raw bytes, max skew, skipped key ids), rebuilds the
objects, then ``gc.freeze()``\\ s them. A batch goes out in chunks of raw records as tuples
(``pipeline.raw_to_wire``) and comes back as builtins (``pipeline.to_wire``): quarantine
reason and detail, skip reason, or the opened record's facts with its payload as a
JSON-ready dict. The replay check and the rules stay in the consumer (they need the
store-backed ``seen`` set). Workers verify before they decode, as ``pipeline.open_raw`` does.

A worker that dies breaks the pool: :meth:`OpenPool.open` then raises an ExchangeError
(UNAVAILABLE) after recreating the pool, so the consumer's failed round rewinds to the stored
offsets and the batch is opened again - nothing is lost, nothing committed twice. Workers
start with 'forkserver' (never 'fork': the node has threads and an event loop).
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timedelta

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
    open_ready,
    raw_from_wire,
    raw_to_wire,
    to_wire,
)

#: Records per task: a batch of 2000 makes 16 tasks, so results stream back while the
#: workers open the rest, and both workers stay busy to the end.
CHUNK = 128

InitArgs = tuple[str, bytes, bytes | None, float, tuple[str, ...]]

_context: PipelineContext | None = None


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


def _open_chunk(chunk: list[RawWire], now: datetime) -> list[ReadyWire]:
    """In a worker: open each record of ``chunk``."""
    ctx = _context
    assert ctx is not None, "worker not initialised"
    return [to_wire(open_ready(raw_from_wire(w), ctx, now)) for w in chunk]


def _pid() -> int:
    return os.getpid()


class OpenPool:
    """``processes`` worker processes opening records for one consumer."""

    def __init__(self, ctx: PipelineContext, processes: int) -> None:
        if processes < 1:
            raise ValueError("an open pool needs at least one process")
        self.processes = processes
        self.restarts = 0
        self._init_args = _init_args(ctx)
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("forkserver"),
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
        chunks = [raws[i : i + CHUNK] for i in range(0, len(raws), CHUNK)]
        futures: list[asyncio.Future[list[ReadyWire]]] = []
        try:
            for chunk in chunks:
                wire = [raw_to_wire(r) for r in chunk]
                futures.append(loop.run_in_executor(self._executor, _open_chunk, wire, now))
            out: list[Ready] = []
            for chunk, future in zip(chunks, futures, strict=True):
                wires = await future
                out.extend(from_wire(r, w, now) for r, w in zip(chunk, wires, strict=True))
            return out
        except BrokenProcessPool as exc:
            for future in futures:
                future.cancel()
            self._restart()
            raise ExchangeError(
                Reason.UNAVAILABLE, f"a record-opening process died ({exc}); pool restarted"
            ) from exc

    def _restart(self) -> None:
        old, self._executor = self._executor, self._new_executor()
        self.restarts += 1
        old.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
