"""The lifecycle contract of exchange.bus.started / start_or_close, on stand-in clients.

Whatever ends a client's life (its start raising or being cancelled, the block raising or
being cancelled), it is stopped, and the error or cancellation that ended it goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest
from aiokafka.errors import KafkaConnectionError

from exchange.bus import start_or_close, started, stop_quietly


class _Client:
    """An aiokafka client stand-in: records its calls; start and stop do what it is told."""

    def __init__(
        self,
        *,
        start_error: BaseException | None = None,
        start_hangs: bool = False,
        stop_error: BaseException | None = None,
    ) -> None:
        self.start_error, self.start_hangs, self.stop_error = start_error, start_hangs, stop_error
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")
        if self.start_hangs:
            await asyncio.Event().wait()
        if self.start_error is not None:
            raise self.start_error
        self.calls.append("started")

    async def stop(self) -> None:
        self.calls.append("stop")
        if self.stop_error is not None:
            raise self.stop_error


class _AdminClient:
    """Stands in for AIOKafkaAdminClient, which has close() and no stop()."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")

    async def close(self) -> None:
        self.calls.append("close")


async def _until(condition: object, deadline_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not condition():  # type: ignore[operator]
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.001)


async def test_a_started_client_is_stopped_when_the_block_ends() -> None:
    """The block gets the started client; leaving it normally stops it, once."""
    client = _Client()
    async with started(client) as c:
        assert c is client
        assert client.calls == ["start", "started"]
    assert client.calls == ["start", "started", "stop"]


async def test_a_start_that_raises_stops_the_client_and_its_error_goes_on() -> None:
    """start() raising: the client is stopped, the block never runs, the same error is raised."""
    error = KafkaConnectionError("no broker")
    client = _Client(start_error=error)
    ran = False
    with pytest.raises(KafkaConnectionError) as caught:
        async with started(client):
            ran = True
    assert caught.value is error
    assert not ran
    assert client.calls == ["start", "stop"]


async def test_a_cancelled_start_stops_the_client_and_the_cancellation_goes_on() -> None:
    """start() cancelled half-way: the client is stopped and the task ends cancelled."""
    client = _Client(start_hangs=True)

    async def use() -> None:
        async with started(client):
            pytest.fail("the block ran without a started client")

    task = asyncio.create_task(use())
    await _until(lambda: "start" in client.calls)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.calls == ["start", "stop"]


async def test_a_block_that_raises_stops_the_client_and_its_error_goes_on() -> None:
    """The block raising: the client is stopped and the block's error is what the caller sees."""
    client = _Client()
    with pytest.raises(LookupError, match="from the block"):
        async with started(client):
            raise LookupError("from the block")
    assert client.calls == ["start", "started", "stop"]


async def test_a_cancelled_block_stops_the_client_and_the_cancellation_goes_on() -> None:
    """The block cancelled while it waits: the client is stopped and the task ends cancelled."""
    client = _Client()

    async def use() -> None:
        async with started(client):
            await asyncio.Event().wait()

    task = asyncio.create_task(use())
    await _until(lambda: "started" in client.calls)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.calls == ["start", "started", "stop"]


@pytest.mark.parametrize(
    "stop_error",
    [KafkaConnectionError("gone"), OSError("reset"), RuntimeError("aiokafka bug")],
    ids=["kafka", "os", "other"],
)
async def test_a_stop_that_fails_does_not_mask_the_blocks_error(stop_error: Exception) -> None:
    """The block's error reaches the caller even when stopping the client fails too."""
    client = _Client(stop_error=stop_error)
    with pytest.raises(LookupError, match="the real error"):
        async with started(client):
            raise LookupError("the real error")
    assert client.calls[-1] == "stop"


async def test_a_stop_that_fails_does_not_mask_the_starts_error() -> None:
    """A start that raises and a stop that raises: the caller sees the start's error."""
    client = _Client(start_error=KafkaConnectionError("no broker"), stop_error=RuntimeError("x"))
    with pytest.raises(KafkaConnectionError, match="no broker"):
        async with started(client):
            pass
    assert client.calls == ["start", "stop"]


async def test_a_stop_that_fails_after_a_clean_block_raises_nothing() -> None:
    """Stopping is a clean-up: its failure after a block that succeeded raises nothing."""
    client = _Client(stop_error=KafkaConnectionError("gone"))
    async with started(client):
        pass
    assert client.calls == ["start", "started", "stop"]


async def test_the_wrap_bounds_the_start_and_the_client_is_stopped_when_it_gives_up() -> None:
    """A wrap (here a timeout) gets start()'s awaitable; what it raises goes on, the
    client stopped: the audit reader's bounded start."""
    client = _Client(start_hangs=True)

    def bounded(start: Awaitable[object]) -> Awaitable[object]:
        return asyncio.wait_for(start, 0.05)

    with pytest.raises(TimeoutError):
        async with started(client, bounded):
            pytest.fail("the block ran without a started client")
    assert client.calls == ["start", "stop"]


async def test_start_or_close_leaves_a_started_client_open_for_its_owner() -> None:
    """start_or_close (long-lived clients): a client that starts is not stopped."""
    client = _Client()
    await start_or_close(client)
    assert client.calls == ["start", "started"]


async def test_start_or_close_stops_a_client_whose_start_step_fails() -> None:
    """start_or_close: a failure in the wrap after start() (e.g. subscribing) stops the client."""
    client = _Client()

    async def subscribed(start: Awaitable[object]) -> None:
        await start
        raise ValueError("subscribe refused")

    with pytest.raises(ValueError, match="subscribe refused"):
        await start_or_close(client, subscribed)
    assert client.calls == ["start", "started", "stop"]


async def test_start_or_close_stops_a_client_whose_start_is_cancelled() -> None:
    """start_or_close cancelled half-way: the client is stopped, the task ends cancelled."""
    client = _Client(start_hangs=True)
    task = asyncio.create_task(start_or_close(client))
    await _until(lambda: "start" in client.calls)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.calls == ["start", "stop"]


async def test_an_admin_client_is_closed_as_it_has_no_stop() -> None:
    """An admin client (close(), no stop()) is closed on leaving the block, and by stop_quietly."""
    admin = _AdminClient()
    async with started(admin):
        pass
    assert admin.calls == ["start", "close"]
    await stop_quietly(admin)
    assert admin.calls == ["start", "close", "close"]


async def test_a_stop_that_fails_closes_the_client_underneath() -> None:
    """A stop ending in an error may have left connections open: the inner client is closed."""

    class Inner:
        closed = False

        async def close(self) -> None:
            Inner.closed = True

    client = _Client(stop_error=RuntimeError("stop broke half-way"))
    client._client = Inner()  # type: ignore[attr-defined]  # where aiokafka keeps it
    await stop_quietly(client)
    assert Inner.closed
