"""A real PostgreSQL server for the store tests, started from the installed binaries.

``postgres_server`` (session): ``NCP_TEST_POSTGRES_URL`` when set (an existing server; the
URL must allow CREATE DATABASE), else a throw-away server: ``initdb`` into a temporary
folder, ``pg_ctl start`` on a free port of 127.0.0.1 with its unix socket inside that
folder and trust authentication, stopped (``pg_ctl stop -m fast`` on its own data
folder) and removed at the end of the session. initdb and postgres refuse to run as
root, so as root they run as the ``postgres`` system user (``runuser``), which owns the
folder. No binaries: the test FAILS saying how to install them; it is never skipped.

``postgres_url`` (per test): a fresh database on that server, dropped afterwards, so
every test starts from an empty schema.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

ENV_URL = "NCP_TEST_POSTGRES_URL"
INSTALL_HINT = (
    "no PostgreSQL server binaries found (looked for initdb, pg_ctl and postgres in "
    "/usr/lib/postgresql/*/bin and on PATH); install them with `apt-get install postgresql` "
    f"(or `make system-deps`), or point {ENV_URL} at a server where you may CREATE DATABASE"
)


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server could be started."""


def find_bin_dir() -> Path | None:
    """The newest installed PostgreSQL ``bin`` folder holding initdb, pg_ctl and postgres."""

    def complete(folder: Path) -> bool:
        return all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if complete(Path(candidate)):
            return Path(candidate)
    on_path = shutil.which("initdb")
    if on_path and complete(Path(on_path).resolve().parent):
        return Path(on_path).resolve().parent
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """A server this process started; :meth:`stop` stops it by its own data folder."""

    root: Path
    bin_dir: Path
    port: int
    prefix: tuple[str, ...]  # ("runuser", "-u", "postgres", "--") when running as root

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop(self) -> None:
        try:
            self.run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "stop", "-m", "fast", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_server() -> PostgresServer:
    """initdb + pg_ctl start a private server; raises PostgresUnavailableError saying why."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailableError(INSTALL_HINT)
    root = Path(tempfile.mkdtemp(prefix="ncp-pg-"))
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresUnavailableError(
                "running as root and there is no `postgres` system user to run the server as; "
                "`apt-get install postgresql` creates it"
            ) from None
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ("runuser", "-u", "postgres", "--")
    server = PostgresServer(root, bin_dir, 0, prefix)
    (root / "sock").mkdir()
    if prefix:
        os.chown(root / "sock", pwd.getpwnam("postgres").pw_uid, -1)
    init = server.run(
        str(bin_dir / "initdb"),
        *("-D", str(server.data), "-U", "postgres", "--auth=trust"),
        *("-E", "UTF8", "--no-locale", "--no-sync"),
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailableError(f"initdb failed: {init.stderr.strip() or init.stdout}")
    for _attempt in range(3):  # a free port can be taken between the probe and the bind
        server.port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {server.port} -k {root / 'sock'}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=50 -c shared_buffers=32MB"
        )
        started = server.run(
            str(bin_dir / "pg_ctl"),
            *("-D", str(server.data), "-l", str(root / "server.log"), "-w", "-t", "60"),
            *("-o", options, "start"),
        )
        if started.returncode == 0:
            return server
    log = (root / "server.log").read_text(errors="replace")[-2000:]
    shutil.rmtree(root, ignore_errors=True)
    raise PostgresUnavailableError(f"pg_ctl start failed: {started.stderr.strip()}\n{log}")


def database_url(server_url: str, database: str) -> str:
    """``server_url`` with its database replaced by ``database``."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A URL of a running PostgreSQL server on which tests may CREATE DATABASE."""
    existing = os.environ.get(ENV_URL)
    if existing:
        yield existing
        return
    try:
        server = start_server()
    except PostgresUnavailableError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def postgres_url(postgres_server: str) -> AsyncIterator[str]:
    """A fresh, empty database for this test only (dropped afterwards)."""
    name = f"ncp_test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield database_url(postgres_server, name)
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=[pytest.mark.integration, pytest.mark.postgres]),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store on each backend: a SQLite file in tmp_path, or a PostgreSQL database
    (import this fixture with ``postgres_server`` and ``postgres_url``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'node.db'}"
    return str(request.getfixturevalue("postgres_url"))
