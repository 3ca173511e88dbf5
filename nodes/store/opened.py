"""A node's store opened for one piece of work (a CLI command, a demo step) and closed after.

async with opened_store(config.store.url) as store: ...
result = asyncio.run(with_store(config, work))      # work: async (store) -> result
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from nodes.config import NodeConfig
from nodes.store.base import Store, open_store


@asynccontextmanager
async def opened_store(url: str) -> AsyncIterator[Store]:
    """The store at ``url``, opened (migrated) on entry and closed on exit."""
    store = open_store(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def with_store(config: NodeConfig, work: Callable[[Store], Awaitable[Any]]) -> Any:
    """``work`` run on the node's own store, opened for it and closed after; its result."""
    async with opened_store(config.store.url) as store:
        return await work(store)
