"""Built-in inbound connector ``http-inbound``: the node serves a REST API (FastAPI, uvicorn).

Options::

    [[connectors]]
    name = "rest"
    plugin = "http-inbound"
    [connectors.options]
    listen = "127.0.0.1:8480"        # host:port; loopback by default
    max_body_bytes = 1048576
    tls = { cert = "server.pem", key = "server.key", client_ca = "clients-ca.pem" }  # optional
    [[connectors.options.tokens]]    # see connectors.tokens; the config holds only hashes
    name = "bank-x"
    sha256 = "..."                   # `exchange connector token` prints a token and its hash
    roles = ["report"]
    categories = ["IDENTITY_FRAUD"]

With ``tls.client_ca`` every client must also present a certificate that CA signed (mutual
TLS), on top of its bearer token. uvicorn runs inside the node's event loop as this
connector's task (``uvicorn.Server(config).serve()``); the routes are in
:mod:`connectors.http_api`. A failure of the server (the port taken, say) ends the task and
the node's supervisor restarts it with backoff; the node goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import uvicorn

from connectors.api import ConnectorContext
from connectors.http_api import build_app
from connectors.tokens import TokenTable
from exchange.errors import InputError, Reason

DEFAULT_LISTEN = "127.0.0.1:8480"


def parse_listen(value: Any, where: str) -> tuple[str, int]:
    """``"host:port"`` -> (host, port); InputError(BAD_CONFIG) naming ``where`` otherwise."""
    if not isinstance(value, str):
        raise InputError([(where, "host:port, e.g. 127.0.0.1:8480")], reason=Reason.BAD_CONFIG)
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError([(where, f"host:port, got {value!r}")], reason=Reason.BAD_CONFIG)
    return host.strip("[]"), int(port)


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: SIGTERM and SIGINT belong to the node."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpInboundConnector:
    """Serves :func:`connectors.http_api.build_app` on ``options.listen`` until cancelled."""

    def __init__(self, context: ConnectorContext) -> None:
        where = f"connectors.{context.name}.options"
        options = context.options
        self.host, self.port = parse_listen(
            options.get("listen", DEFAULT_LISTEN), f"{where}.listen"
        )
        self.tokens = TokenTable.from_options(options.get("tokens"), f"{where}.tokens")
        max_body = options.get("max_body_bytes", 1 << 20)
        if not isinstance(max_body, int) or max_body < 1024:
            raise InputError(
                [(f"{where}.max_body_bytes", "an integer of at least 1024")],
                reason=Reason.BAD_CONFIG,
            )
        self.tls: dict[str, Any] = {}
        tls = options.get("tls")
        if tls is not None:
            if not isinstance(tls, dict) or not tls.get("cert") or not tls.get("key"):
                raise InputError(
                    [(f"{where}.tls", "a table with cert and key (and client_ca for mTLS)")],
                    reason=Reason.BAD_CONFIG,
                )
            self.tls = {
                "ssl_certfile": str(context.path("tls.cert", str(tls["cert"]))),
                "ssl_keyfile": str(context.path("tls.key", str(tls["key"]))),
            }
            if tls.get("client_ca"):
                self.tls["ssl_ca_certs"] = str(context.path("tls.ca", str(tls["client_ca"])))
                self.tls["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        self.app = build_app(context, self.tokens, max_body_bytes=max_body)
        self.server: uvicorn.Server | None = None
        self._closing = False
        #: set once the socket listens (``port`` is then the bound one, also for port 0)
        self.listening = asyncio.Event()

    async def run(self, context: ConnectorContext) -> None:
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_keep_alive=5,
            limit_concurrency=64,
            **self.tls,
        )
        server = self.server = _Server(config)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
        # without it every response waits out the client's delayed ACK (~40 ms a request).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        context.log.info("REST API listening", host=self.host, port=self.port)
        self.listening.set()
        try:
            await server.serve(sockets=[sock])
            if not self._closing:  # it stopped by itself: let the supervisor restart it
                raise RuntimeError("the REST server stopped")
        except SystemExit as exc:  # uvicorn exits the process on a failed start-up: not ours
            raise RuntimeError(f"the REST server failed to start (exit {exc.code})") from None
        except asyncio.CancelledError:  # the node stops: close the connections, then go
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.shutdown(sockets=[sock]), 5.0)
            raise
        finally:
            self.listening.clear()
            sock.close()

    async def close(self) -> None:
        self._closing = True
        if self.server is not None:
            self.server.should_exit = True
