"""Real clients against the real broker: a start cancelled at any point leaves nothing open.

Each test runs one of exchange's calls again and again, cancelling it after 0, 1, 2, ...
turns of the event loop until it runs to its end, so that the cancellation lands at
every await point of the client's start (aiokafka's bootstrap included) and of the
work after it. Then the garbage collector runs: a connection left open would show up
as an ``Unclosed AIOKafkaConnection`` ResourceWarning (or an unclosed client's).
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaProducer

from exchange.bus import KafkaSettings, ensure_topics, producer_kwargs, started
from nodes.consumer_offsets import end_offsets
from tests.helpers.broker import unique_topic

pytestmark = pytest.mark.integration

#: The most a sweep may take (a busy machine); a sweep usually takes about a second.
SWEEP_DEADLINE_S = 90.0


async def _cancelled_at_every_turn(call: Callable[[], Awaitable[object]]) -> int:
    """Run ``call()`` cancelled after 0, 1, 2, ... loop turns until one run completes;
    how many runs were cancelled. Every cancellation must go through (CancelledError)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SWEEP_DEADLINE_S
    turns, cancelled = 0, 0
    while True:
        assert loop.time() < deadline, f"still not done after {turns} turns"
        task = asyncio.create_task(call())
        for _ in range(turns):
            await asyncio.sleep(0)
            if task.done():
                break
        if task.done():
            await task  # ran to its end: every earlier point has been cut
            return cancelled
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            cancelled += 1
        else:
            return cancelled  # finished before the cancellation reached it
        turns += 1 + turns // 16  # every turn early on; the start's waits are long after


def _unclosed(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


async def _sweep_leaves_nothing_open(call: Callable[[], Awaitable[object]]) -> None:
    gc.collect()  # what earlier tests left is theirs, reported as usual, not counted here
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cancelled = await _cancelled_at_every_turn(call)
        gc.collect()
    assert cancelled > 3, "the sweep never cut the call short: it tests nothing"
    assert _unclosed(caught) == []


async def test_ensure_topics_cancelled_anywhere_leaves_no_connection_open(
    kafka_settings: KafkaSettings,
) -> None:
    """ensure_topics (an admin client) cancelled at any point closes every connection it opened."""
    topic = unique_topic("life")
    await ensure_topics(kafka_settings, {topic: 1})
    await _sweep_leaves_nothing_open(lambda: ensure_topics(kafka_settings, {topic: 1}))


async def test_end_offsets_cancelled_anywhere_leaves_no_connection_open(
    kafka_settings: KafkaSettings,
) -> None:
    """end_offsets (a consumer, as `exchange node status` reads it) cancelled at any point
    closes every connection it opened."""
    topic = unique_topic("life")
    await ensure_topics(kafka_settings, {topic: 1})
    await _sweep_leaves_nothing_open(lambda: end_offsets(kafka_settings, [topic]))


async def test_a_producer_cancelled_while_starting_leaves_no_connection_open(
    kafka_settings: KafkaSettings,
) -> None:
    """A producer started through started() and cancelled at any point of its start is closed."""

    async def start_a_producer() -> None:
        async with started(AIOKafkaProducer(**producer_kwargs(kafka_settings))):
            pass

    await _sweep_leaves_nothing_open(start_a_producer)
