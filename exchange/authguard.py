"""Credentials the cluster refuses are reported as refused, not as an unreachable cluster.

Every aiokafka client (producer, consumer, admin) starts with
``AIOKafkaClient.bootstrap``: it opens a connection to each bootstrap server in turn
(TCP, TLS, then ``AIOKafkaConnection._do_sasl_handshake``: the SASL handshake and
authentication).
A server that refuses the credentials (``SaslAuthenticationFailed`` for a wrong user or
password, ``UnsupportedSaslMechanismError`` for a mechanism it does not offer) is only
logged and skipped, like a server that does not answer, and the bootstrap ends in
``KafkaConnectionError("Unable to bootstrap from [...]")``: a wrong password reads as an
outage, and every caller retries it for ever.

:func:`install` wraps that bootstrap and the SASL step (noting its refusals while a
bootstrap runs): when the bootstrap fails after at least one server refused the
credentials, the refusal is raised instead (a ``KafkaError``, chained to the connection
error), its text naming the SASL user, the mechanism and the server, never the password.
:func:`exchange.bus.translate` turns it into a non-retriable
:class:`~exchange.errors.AuthenticationError`. A bootstrap that succeeds, or fails with no
refusal (the cluster is away), is left exactly as it was.

The replacement is process-wide (two methods of aiokafka's classes; it leaves
``aiokafka.client.create_conn`` to :mod:`exchange.bus_lifecycle`) and checked against the
aiokafka versions it was written for, as :mod:`exchange.fetchguard` is.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any

import aiokafka
from aiokafka import client as _client
from aiokafka import conn as _conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

__all__ = ["REFUSALS", "install", "refusal_text"]

#: The aiokafka errors that mean "the cluster refused these credentials".
REFUSALS: tuple[type[KafkaError], ...] = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    UnsupportedSaslMechanismError,
)

_CHECKED = ("0.14.",)


@dataclass
class _Bootstrap:
    """The refusals met by one bootstrap while it runs (``active``)."""

    refusals: list[tuple[str, int, KafkaError]] = field(default_factory=list)
    active: bool = True


# The bootstrap in progress in this task. Tasks the bootstrap creates (aiokafka's metadata
# synchroniser) inherit it, hence ``active``: nothing is recorded once it has returned.
_current: contextvars.ContextVar[_Bootstrap | None] = contextvars.ContextVar(
    "exchange_authguard_bootstrap", default=None
)


def refusal_text(
    error: KafkaError, *, user: str | None, mechanism: str | None, host: str, port: int
) -> str:
    """What a refusal says: the SASL user and mechanism, the server, the broker's words."""
    who = f"SASL user {user!r}" if user else "the SASL credentials"
    how = f" ({mechanism})" if mechanism else ""
    first = error.args[0] if error.args else None
    words = first if isinstance(first, str) else getattr(error, "description", "") or "refused"
    return f"{host}:{port} refused {who}{how}: {words}"


def _abort(connection: Any) -> None:
    """Drop a refused connection's socket now. aiokafka closes it gracefully, which over
    TLS waits for the server's close_notify: an event loop that ends first (a CLI command
    exiting, a test) leaves the socket open until the garbage collector warns of it."""
    writer = getattr(connection, "_writer", None)
    transport = None if writer is None else writer.transport
    if transport is not None:
        transport.abort()


def install() -> None:
    """Make every aiokafka client in this process report refused credentials as such
    (idempotent, process-wide)."""
    bootstrap = _client.AIOKafkaClient.bootstrap
    if getattr(bootstrap, "_exchange_authguard", False):
        return
    version = aiokafka.__version__
    if not version.startswith(_CHECKED):
        raise RuntimeError(
            f"exchange.authguard was checked against aiokafka {', '.join(_CHECKED)}, "
            f"not {version}: check aiokafka.client.AIOKafkaClient.bootstrap and "
            "aiokafka.conn.AIOKafkaConnection._do_sasl_handshake before widening it"
        )
    handshake = _conn.AIOKafkaConnection._do_sasl_handshake

    async def guarded_handshake(self: Any) -> Any:
        try:
            return await handshake(self)
        except REFUSALS as exc:
            _abort(self)
            current = _current.get()
            if current is not None and current.active:
                current.refusals.append((self.host, self.port, exc))
            raise

    async def guarded_bootstrap(self: Any) -> None:
        attempt = _Bootstrap()
        token = _current.set(attempt)
        try:
            await bootstrap(self)
        except KafkaConnectionError as exc:
            if not attempt.refusals:
                raise
            host, port, refused = attempt.refusals[-1]
            text = refusal_text(
                refused,
                user=getattr(self, "_sasl_plain_username", None),
                mechanism=getattr(self, "_sasl_mechanism", None),
                host=host,
                port=port,
            )
            raise type(refused)(text) from exc
        finally:
            attempt.active = False
            _current.reset(token)

    guarded_bootstrap._exchange_authguard = True  # type: ignore[attr-defined]
    _conn.AIOKafkaConnection._do_sasl_handshake = guarded_handshake
    _client.AIOKafkaClient.bootstrap = guarded_bootstrap
