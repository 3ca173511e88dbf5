"""The lifecycle contract of exchange.bus.started / start_or_close, on stand-in clients.

Whatever ends a client's life (its start raising or being cancelled, the block raising or
being cancelled), it is stopped, and the error or cancellation that ended it goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import aiokafka
import pytest
from aiokafka import client as aiokafka_client
from aiokafka.errors import KafkaConnectionError

from exchange import bus_lifecycle
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


class _Connection:
    """Stands in for an AIOKafkaConnection: open until closed."""

    def __init__(self) -> None:
        self.open = True

    def connected(self) -> bool:
        return self.open

    def close(self) -> None:
        self.open = False


class _Bootstrapping(_Client):
    """A client whose start opens a connection through aiokafka's client module and holds it
    only in a local variable (as aiokafka's bootstrap does) before it fails or hangs."""

    async def start(self) -> None:
        self.calls.append("start")
        self.connection = await aiokafka_client.create_conn("127.0.0.1", 9)
        await super().start()


@pytest.fixture
def fake_connections(monkeypatch: pytest.MonkeyPatch) -> list[_Connection]:
    """aiokafka's connection factory replaced by one making stand-ins (the noting kept)."""
    made: list[_Connection] = []

    async def create_conn(*args: object, **kwargs: object) -> _Connection:
        made.append(_Connection())
        return made[-1]

    monkeypatch.setattr(bus_lifecycle, "_original_create_conn", create_conn)
    return made


def test_exchange_bus_installs_the_noting_of_connections() -> None:
    """Importing exchange.bus puts the noting wrapper in aiokafka's client module."""
    assert aiokafka_client.create_conn is bus_lifecycle._noted_create_conn


async def test_a_connection_a_failed_start_held_alone_is_closed(
    fake_connections: list[_Connection],
) -> None:
    """A connection the start opened, that stop() cannot reach, is closed when it fails."""
    client = _Bootstrapping(start_error=KafkaConnectionError("metadata refused"))
    with pytest.raises(KafkaConnectionError):
        async with started(client):
            pass
    assert len(fake_connections) == 1
    assert not fake_connections[0].open


async def test_a_connection_a_cancelled_start_held_alone_is_closed(
    fake_connections: list[_Connection],
) -> None:
    """The same when the start is cancelled while it waits (aiokafka's bootstrap window)."""
    client = _Bootstrapping(start_hangs=True)
    task = asyncio.create_task(start_or_close(client))
    await _until(lambda: len(fake_connections) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not fake_connections[0].open


async def test_a_started_clients_connections_are_left_to_it_and_no_longer_noted(
    fake_connections: list[_Connection],
) -> None:
    """A start that succeeds closes nothing, and what the tasks it made open later (they
    share its context) is not noted: the list does not grow for a long-lived client."""
    later = asyncio.Event()
    noted_later: list[int] = []

    async def background() -> None:  # as aiokafka's metadata task, made during start()
        await later.wait()
        await aiokafka_client.create_conn("127.0.0.1", 9)
        opened = bus_lifecycle._opened.get()
        noted_later.append(-1 if opened is None else len(opened.connections))

    class Spawning(_Bootstrapping):
        async def start(self) -> None:
            self.task = asyncio.create_task(background())
            await super().start()

    client = Spawning()
    await start_or_close(client)
    later.set()
    await client.task
    assert noted_later == [0]
    assert [c.open for c in fake_connections] == [True, True]
    with pytest.raises(KafkaConnectionError):  # a later failed start closes only its own
        await start_or_close(_Bootstrapping(start_error=KafkaConnectionError("x")))
    assert [c.open for c in fake_connections] == [True, True, False]


def test_install_refuses_an_aiokafka_it_was_not_checked_against(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An aiokafka release this was not checked against fails install() loudly."""
    monkeypatch.setattr(aiokafka_client, "create_conn", bus_lifecycle._original_create_conn)
    monkeypatch.setattr(aiokafka, "__version__", "0.99.0")
    with pytest.raises(RuntimeError, match=r"aiokafka 0\.99\.0 not checked"):
        bus_lifecycle.install()
