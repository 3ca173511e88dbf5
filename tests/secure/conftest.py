"""One SASL_SSL broker (SCRAM-SHA-512, StandardAuthorizer) for the module's tests."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.helpers.broker import free_port
from tests.helpers.secure import SecureBroker
from tests.node.helpers import wait_for


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A secured broker on free ports with users FR, DE, NL, an outsider (XX), an auditor and
    the operator;
    stopped and wiped at the end."""
    broker = SecureBroker(
        tmp_path_factory.mktemp("secure"),
        free_port(),
        free_port(),
        users=("FR", "DE", "NL", "XX", "auditor"),
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        broker.reset()


def _sockets_to(port: int) -> int:
    """How many of this process's TCP sockets are connected to ``port`` (from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                    count += 1
    return count


@pytest.fixture(autouse=True)
async def _tls_connections_closed(secure_broker: SecureBroker) -> AsyncIterator[None]:
    """After each test, while its event loop still runs, wait (up to 10 s) until no socket
    to the broker is left: a TLS connection closed at the end of a test (a refused login,
    a cancelled start) finishes its close_notify exchange on the loop, and a loop that
    ended first would leave its socket to the garbage collector, which then warns inside
    whatever test runs next. A socket still open after the wait is a real leak: it is
    collected here, so its warning fails this test, not the next."""
    yield
    port = int(secure_broker.bootstrap.rsplit(":", 1)[1])
    with contextlib.suppress(AssertionError):  # still open: collected below, and reported
        await wait_for(
            lambda: not _sockets_to(port),
            within_s=10,
            what="the test's connections to the broker closing",
            interval=0.02,
        )
    gc.collect()
