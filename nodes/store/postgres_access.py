"""The PostgreSQL store's connection plumbing: a pool, connections in or out of a
transaction, and every asyncpg error translated to the project's errors (TransientError for
what a retry may cure, StoreError otherwise). :class:`PostgresAccess` is the base of
:class:`nodes.store.postgres.PostgresStore` and of its method groups
(:mod:`nodes.store.postgres_queries`, :mod:`nodes.store.postgres_outbox`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from exchange.errors import ExchangeError, TransientError
from nodes.store.base import StoreError

T = TypeVar("T")
Conn = Any  # asyncpg.Connection (asyncpg ships no type hints)

# Everything asyncpg raises: server errors, client misuse or a closed connection, a broken
# protocol state (a connection killed mid-operation), network errors and timeouts.
DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)
_TRANSIENT_CLASSES = ("08", "53", "57")  # connection, insufficient resources, operator
_TRANSIENT_STATES = frozenset({"40001", "40P01", "55P03"})  # serialization, deadlock, lock


def translate(exc: BaseException) -> ExchangeError:
    text = f"postgres store: {type(exc).__name__}: {exc}"
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        if state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES:
            return TransientError(text)
        return StoreError(text)
    if isinstance(exc, asyncpg.InterfaceError) and "closed" not in str(exc):
        return StoreError(text)
    return TransientError(text)  # OSError, TimeoutError, a connection that went away


class PostgresAccess:
    """A pool of connections to one PostgreSQL database (opened by the store)."""

    _pool: Any = None

    # --- plumbing ------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _conn(self, *, transaction: bool = False) -> AsyncIterator[Conn]:
        if self._pool is None:
            raise StoreError("postgres store: not open (call open() first)")
        try:
            async with self._pool.acquire() as conn:
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except ExchangeError:
            raise
        except DRIVER_ERRORS as exc:
            raise translate(exc) from exc

    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        async with self._conn() as conn:
            return await fn(conn)

    async def _write(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        async with self._conn(transaction=True) as conn:
            return await fn(conn)
