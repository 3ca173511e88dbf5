"""Where tests and benchmarks get their Kafka broker, and small helpers around it.

:func:`acquire_broker` finds a broker, in this order, and says how to release it:

1. ``KAFKA_BOOTSTRAP_SERVERS`` when set: used as it is, never stopped;
2. testcontainers' Kafka module when a Docker engine answers (probed with a short
   timeout, so the probe costs milliseconds when there is none): stopped at the end;
3. the local broker of ``deploy/kafka/kafka.sh`` (port ``NCP_KAFKA_PORT``, default
   9092): when ``kafka.sh status`` says it runs, it is used and left running; otherwise
   it is started and stopped again at release (only the one started here), and its data
   (the session's own topics) removed.

:class:`LocalBroker` runs a *private* broker on ports of the caller's choosing, for
tests that stop and restart a broker mid-stream (outages). Each port has its own run
folder in the script's cache, so private brokers and the shared one run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"
ENV_BOOTSTRAP = "KAFKA_BOOTSTRAP_SERVERS"
DEFAULT_PORT = 9092
TOPIC_ALREADY_EXISTS = 36

HOW_TO_GET_ONE = (
    "No Kafka broker for the integration tests. Either set KAFKA_BOOTSTRAP_SERVERS=host:port, "
    "or install Java 17+ and Maven (Debian: apt-get install openjdk-17-jre-headless maven, "
    "or `make system-deps`) so that deploy/kafka/kafka.sh can fetch and start a local broker, "
    "or run a Docker engine for testcontainers."
)


class BrokerUnavailableError(RuntimeError):
    """No broker could be found or started; the message says how to get one."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def unique_prefix() -> str:
    """A topic prefix no other test run uses, e.g. ``"t3f9a1c2b7d04"``."""
    return f"t{uuid.uuid4().hex[:12]}"


def unique_topic(prefix: str = "t") -> str:
    """A topic name no other test uses, e.g. ``"t-5b0c...-..."``."""
    return f"{prefix}-{uuid.uuid4().hex}"


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 3) -> None:
    """Create ``names`` with ``partitions`` partitions each (replication 1); existing ones stay."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(name, partitions, 1) for name in names], timeout_ms=15_000
        )
    finally:
        await admin.close()
    for entry in response.topic_errors:
        topic, code = entry[0], entry[1]
        if code not in (0, TOPIC_ALREADY_EXISTS):
            raise RuntimeError(f"creating topic {topic}: {for_code(code).__name__}")


async def produce_many(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]]) -> None:
    """Write ``(key, value)`` records to ``topic`` once, with raw aiokafka at 1 MB batches."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_batch_size=1_048_576, linger_ms=20
    )
    await producer.start()
    try:
        sent = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


# --- the local broker script -------------------------------------------------------------


async def auto_creation_applied(bootstrap: str, control: str, timeout_s: float = 30.0) -> bool:
    """Positive proof that every topic auto-creation requested before this call is done.

    A broker auto-creates topics asynchronously: a Metadata request naming a missing topic
    is answered at once and the creation goes to the controller, which applies such
    requests in order. So this asks for one more, the topic ``control``, and waits until
    it is writable; any creation requested earlier is applied by then. Returns False when
    the broker does not auto-create (it then created nothing earlier either).
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(control, b"control"), timeout_s)
    except (KafkaError, TimeoutError):
        return False
    finally:
        await producer.stop()
    return True


def _kafka_sh(
    command: str, env: dict[str, str] | None = None, timeout_s: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KAFKA_SH), command],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@dataclass
class LocalBroker:
    """A private broker on ``port`` (controller on ``controller_port``) run by ``kafka.sh``.

    ``start()`` waits until it answers; ``stop()`` stops it gracefully and ``kill()``
    abruptly (SIGKILL), both by the PID the script recorded. Data persists across
    stop/start (an outage, not a wipe); ``reset()`` removes it while stopped.
    Usable as a context manager that stops the broker on exit.
    """

    port: int
    controller_port: int
    start_timeout_s: int = 60
    _env: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._env = {
            "NCP_KAFKA_PORT": str(self.port),
            "NCP_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "NCP_KAFKA_START_TIMEOUT_S": str(self.start_timeout_s),
        }

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:<port>"``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the broker (a no-op when it already runs) and wait until it answers."""
        done = _kafka_sh("start", self._env, timeout_s=self.start_timeout_s + 120)
        if done.returncode != 0:
            reason = done.stderr.strip()
            raise BrokerUnavailableError(
                f"kafka.sh start on port {self.port} failed: {reason}\n{HOW_TO_GET_ONE}"
            )

    def stop(self) -> None:
        """Stop the broker gracefully (SIGTERM, then SIGKILL after 30 s)."""
        done = _kafka_sh("stop", self._env, timeout_s=60)
        if done.returncode != 0:
            raise RuntimeError(f"kafka.sh stop on port {self.port} failed: {done.stderr.strip()}")

    def pid(self) -> int | None:
        """The broker's PID, or None when it does not run."""
        done = _kafka_sh("status", self._env, timeout_s=10)
        found = re.search(r"pid (\d+)", done.stdout) if done.returncode == 0 else None
        return int(found.group(1)) if found else None

    def kill(self) -> None:
        """Kill the broker at once (SIGKILL), as a crash would, and wait until it is gone."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        _kafka_sh("stop", self._env, timeout_s=30)  # removes the stale PID file

    def data_dir(self) -> Path:
        """The folder holding the broker's log segments (``<topic>-<partition>/``)."""
        done = _kafka_sh("status", self._env, timeout_s=10)
        running = re.search(r"log (\S+)/kafka\.log", done.stdout)
        if running:
            return Path(running.group(1)) / "data"
        home = re.search(r"home (\S+)\)", done.stdout)
        assert home, done.stdout
        return Path(home.group(1)) / f"run-{self.port}" / "data"

    def is_running(self) -> bool:
        """Whether the script's broker on this port runs."""
        return self.pid() is not None

    def reset(self) -> None:
        """Remove the broker's data (it must be stopped)."""
        done = _kafka_sh("reset", self._env, timeout_s=30)
        if done.returncode != 0:
            raise RuntimeError(f"kafka.sh reset on port {self.port} failed: {done.stderr.strip()}")

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- finding a broker ---------------------------------------------------------------------


def docker_engine_answers(timeout_s: float = 0.5) -> bool:
    """Whether a Docker engine answers ``GET /_ping`` on DOCKER_HOST or the default socket."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            path = host.removeprefix("unix://")
            if not os.path.exists(path):
                return False
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout_s)
            sock.connect(path)
        elif host.startswith("tcp://"):
            name, _, port = host.removeprefix("tcp://").rstrip("/").rpartition(":")
            sock = socket.create_connection((name, int(port)), timeout=timeout_s)
        else:
            return False
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            head = sock.recv(64)
        return head.startswith(b"HTTP/1.") and b" 200 " in head
    except (OSError, ValueError):
        return False


@dataclass
class BrokerLease:
    """A broker to use: ``bootstrap`` ("host:port"), where it came from, how to release it."""

    bootstrap: str
    source: str
    _release: Callable[[], None] | None = None

    def release(self) -> None:
        """Stop the broker when this lease started it; otherwise leave it alone."""
        if self._release is not None:
            release, self._release = self._release, None
            release()


def _from_testcontainers() -> BrokerLease:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from testcontainers.community.kafka import KafkaContainer

    container: Any = KafkaContainer().with_kraft()
    container.start()
    return BrokerLease(container.get_bootstrap_server(), "testcontainers", container.stop)


def _from_local_script() -> BrokerLease:
    port = int(os.environ.get("NCP_KAFKA_PORT", DEFAULT_PORT))
    bootstrap = f"127.0.0.1:{port}"
    try:
        status = _kafka_sh("status", timeout_s=10)
    except OSError as exc:
        raise BrokerUnavailableError(f"cannot run {KAFKA_SH}: {exc}\n{HOW_TO_GET_ONE}") from exc
    if status.returncode == 0:
        return BrokerLease(bootstrap, f"local broker already running ({KAFKA_SH.name} status)")
    started = _kafka_sh("start")
    if started.returncode != 0:
        raise BrokerUnavailableError(
            f"{KAFKA_SH} start failed: {started.stderr.strip()}\n{HOW_TO_GET_ONE}"
        )

    def stop() -> None:
        # Every test and benchmark writes to topics of its own: nothing in them is worth
        # keeping, and a data folder that grows by gigabytes a run would make the next
        # start (log recovery) slower each time.
        if _kafka_sh("stop", timeout_s=60).returncode == 0:
            _kafka_sh("reset", timeout_s=60)

    return BrokerLease(
        bootstrap, f"local broker started by the test session ({KAFKA_SH.name})", stop
    )


def acquire_broker(*, docker: bool = True) -> BrokerLease:
    """A broker from the environment, testcontainers or the local script (see the module doc).

    Raises :class:`BrokerUnavailableError` naming what to install or set.
    """
    given = os.environ.get(ENV_BOOTSTRAP, "").strip()
    if given:
        return BrokerLease(given, f"{ENV_BOOTSTRAP}")
    if docker and docker_engine_answers():
        with contextlib.suppress(Exception):  # an engine that cannot run it: try the script
            return _from_testcontainers()
    return _from_local_script()
