"""Starting and stopping aiokafka clients: the one way, so that none leaves a connection open.

``async with started(client) as c:`` starts a producer, consumer or admin client and closes
it (:func:`stop_quietly`) whatever happens: its ``start()`` raising or being cancelled
half-way, the body raising or being cancelled. Nothing is swallowed: the error or the
cancellation that ended the work goes on once the client is closed. Long-lived clients
(the node's consumer and publisher keep theirs across rounds) use :func:`start_or_close`:
started, or closed and the error raised. Both re-exported by :mod:`exchange.bus`.

aiokafka 0.14 opens a bootstrap connection inside ``start()`` that it holds only in a local
variable until the cluster's metadata has arrived: a start cancelled in between leaves that
connection open, out of reach of ``stop()``/``close()``, to be found by the garbage
collector as an ``Unclosed AIOKafkaConnection``. :func:`install` (run on import) makes
aiokafka's client note every connection it opens while one of these starts runs; a start
that fails or is cancelled closes those it left open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

import aiokafka
from aiokafka import client as _aiokafka_client
from aiokafka import conn as _aiokafka_conn

__all__ = ["STOP_GRACE_S", "StartWrap", "install", "start_or_close", "started", "stop_quietly"]

#: How long :func:`stop_quietly` lets a client's stop run when its caller is cancelled.
STOP_GRACE_S = 10.0
#: aiokafka minor versions whose client bootstrap :func:`install` was checked against.
_CHECKED = ("0.11", "0.12", "0.13", "0.14")


class Startable(Protocol):
    """An aiokafka producer, consumer or admin client (or a stand-in for one)."""

    def start(self) -> Awaitable[Any]: ...


C = TypeVar("C", bound=Startable)
#: Wraps the awaitable of ``client.start()``, e.g. to bound it with a timeout.
StartWrap = Callable[[Awaitable[Any]], Awaitable[Any]]


async def stop_quietly(client: Any) -> None:
    """Stop an aiokafka consumer or producer (or close an admin client), whatever state the
    cluster is in, and close its connections even when the caller is being cancelled.

    For clean-ups (a ``finally``, a worker exiting, a loop cancelled at shutdown) where
    nothing is left to lose: a failure to stop must not hide the error that ended the
    work, and must not leave a connection open. The stop runs shielded from the caller's
    cancellation (up to :data:`STOP_GRACE_S`); the cancellation goes through once it is
    done. aiokafka's stop can itself end in the CancelledError of a fetch it cancelled
    (seen with the broker gone mid-read), or in an error, leaving its client open: the
    client is closed then.
    """
    stop = getattr(client, "stop", None) or client.close  # admin clients only close
    stopping = asyncio.ensure_future(stop())
    cancelled = False
    deadline = asyncio.get_running_loop().time() + STOP_GRACE_S
    while not stopping.done():
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        try:
            await asyncio.wait_for(asyncio.shield(stopping), left)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                cancelled = True  # the caller's: finish stopping first
        except Exception:  # a failed stop is what it is (seen below)
            break
    if not stopping.done():  # past the grace time: let it finish on its own
        stopping.add_done_callback(lambda f: f.cancelled() or f.exception())
    elif stopping.cancelled() or stopping.exception() is not None:
        # aiokafka's own stop was cut short or failed: close what it left open
        inner = getattr(client, "_client", None) or getattr(client, "client", None)
        if inner is not None:
            with contextlib.suppress(Exception):
                await inner.close()
    if cancelled:
        raise asyncio.CancelledError


class _Opened:
    """The connections aiokafka opened while one start ran (noted only while it runs)."""

    def __init__(self) -> None:
        self.noting = True
        self.connections: list[Any] = []

    def close_left_open(self) -> None:
        for connection in self.connections:
            if connection.connected():
                with contextlib.suppress(Exception):
                    connection.close()
        self.connections.clear()


_opened: ContextVar[_Opened | None] = ContextVar("exchange_bus_opened", default=None)


async def start_or_close(client: Startable, wrap: StartWrap | None = None) -> None:
    """Start ``client``; when its start raises or is cancelled, close it and re-raise.

    ``wrap`` wraps the awaitable of ``client.start()`` (a timeout, error translation, a
    step that belongs to starting such as subscribing): whatever it raises closes the
    client too. The caller owns a started client and closes it (:func:`stop_quietly`).
    """
    opened = _Opened()
    token = _opened.set(opened)
    try:
        starting = client.start()
        await (starting if wrap is None else wrap(starting))
    except BaseException:
        opened.noting = False
        try:
            await stop_quietly(client)
        finally:
            opened.close_left_open()  # what the client itself no longer holds
        raise
    finally:
        opened.noting = False  # tasks the start made share it: note nothing after
        opened.connections.clear()
        _opened.reset(token)


@asynccontextmanager
async def started(client: C, wrap: StartWrap | None = None) -> AsyncIterator[C]:
    """``async with started(client) as c:``: the client started, and stopped on leaving.

    Its start raising or being cancelled, the body raising or being cancelled: the client
    is closed (:func:`stop_quietly`) and the error or cancellation goes on; a stop that
    fails hides nothing. ``wrap`` as for :func:`start_or_close`.
    """
    await start_or_close(client, wrap)
    try:
        yield client
    finally:
        await stop_quietly(client)


async def _noted_create_conn(*args: Any, **kwargs: Any) -> Any:
    connection = await _original_create_conn(*args, **kwargs)
    opened = _opened.get()
    if opened is not None and opened.noting:
        opened.connections.append(connection)
    return connection


_original_create_conn: Callable[..., Awaitable[Any]] = _aiokafka_conn.create_conn


def install() -> None:
    """Make aiokafka's client note the connections it opens (idempotent, process-wide).

    Checked against the aiokafka versions it was written for: a release that no longer
    opens its connections through ``aiokafka.client.create_conn`` fails loudly.
    """
    current = getattr(_aiokafka_client, "create_conn", None)
    if current is _noted_create_conn:
        return
    if not aiokafka.__version__.startswith(_CHECKED) or current is not _original_create_conn:
        raise RuntimeError(
            f"exchange.bus_lifecycle: aiokafka {aiokafka.__version__} not checked "
            "(its client must open connections through aiokafka.client.create_conn)"
        )
    _aiokafka_client.create_conn = _noted_create_conn
