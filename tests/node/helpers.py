"""Helpers for the node's integration tests and benchmark, on a tuned
:func:`tests.helpers.federation.make_federation`:

- :func:`fr_and_de` makes the two-member federation (FR, DE) most of these tests run on;
- :func:`alert_items` builds validated outbox items (about 1 KB alerts) and :func:`enqueue`
  puts them into a node's outbox (its real SQLite store);
- :class:`NodeProcess` runs ``exchange node run`` as a child process, to be killed with
  SIGKILL, stopped with SIGTERM and measured (peak RSS);
- :func:`wait_for` polls a condition with a bound; :func:`stored_ids`, :func:`outbox_ids`,
  :func:`quarantine_of` read what a node's store holds.

Reading the outbox's message ids and the records' raw times peeks at the SQLite tables
read-only (the Store interface has no listing of SENT outbox items); everything else goes
through :class:`nodes.store.base.Store`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from exchange.ids import NodeId
from exchange.trust import load_trust_list
from nodes.inbound import build_item
from nodes.publisher import Publisher
from nodes.store.base import OutboxItem, QuarantineEntry, Store, open_store
from tests.helpers.federation import Federation, alert_payload, make_federation

REPO = Path(__file__).resolve().parents[2]
#: The interpreter of the project's venv (the one running the tests).
PYTHON = sys.executable

# --- the federation --------------------------------------------------------------------------


def fr_and_de(tmp_path: Path, bootstrap: str, prefix: str, **options: Any) -> Federation:
    """FR and DE in ``tmp_path/fed`` on the broker at ``bootstrap`` under topic ``prefix``,
    their keys valid from a day before now; ``options`` go to :func:`make_federation`
    (``tuned=True``, ``tables=...``, ``per_node=...``)."""
    return make_federation(
        tmp_path / "fed",
        ("FR", "DE"),
        datetime.now(UTC),
        bootstrap=bootstrap,
        prefix=prefix,
        **options,
    )


# --- outbox input ----------------------------------------------------------------------------


def alert_items(
    fed: Federation, node: str, count: int, *, start: int = 0, size: int = 1000
) -> list[OutboxItem]:
    """``count`` validated PENDING alert items from ``node`` to every member (TLP:GREEN, H0)."""
    now = datetime.now(UTC)
    return [
        build_item(
            "OffenceAlert",
            alert_payload(i, node=node, now=now, size=size),
            handling={"tlp": "GREEN", "code": "H0"},
            node=NodeId(node),
            prefix=fed.prefix,
            trust=None,
            now=now,
        )
        for i in range(start, start + count)
    ]


@asynccontextmanager
async def node_store(fed: Federation, node: str) -> AsyncIterator[Store]:
    """A store instance of its own on ``node``'s database (opened, closed on exit)."""
    store: Store = open_store(f"sqlite:///{fed.db_path(node)}")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def enqueue(
    fed: Federation, node: str, items: Sequence[OutboxItem], chunk: int = 5000
) -> int:
    """Put ``items`` into ``node``'s outbox in atomic chunks of ``chunk``; returns the count."""
    async with node_store(fed, node) as store:
        for i in range(0, len(items), chunk):
            await store.enqueue(items[i : i + chunk])
    return len(items)


async def signed_items(fed: Federation, node: str, count: int) -> list[OutboxItem]:
    """``count`` alerts queued and signed by ``node``'s own publisher and marked sent: their
    ``value`` is what ``node`` puts on the bus, for tests that write it themselves."""
    await enqueue(fed, node, alert_items(fed, node, count))
    config = fed.config(node)
    async with node_store(fed, node) as store:
        publisher = Publisher(
            node=config.node,
            store=store,
            kafka=config.kafka.settings(),
            signer=fed.signer(node),
            trust=load_trust_list(config.keys.trust_list, config.root_public_key_path),
            config=config.publisher.model_copy(update={"batch_size": max(count, 1)}),
        )
        signed = await publisher.sign_pending()
        await store.mark_sent([i.id for i in signed], datetime.now(UTC))  # the test sends them
    assert len(signed) == count
    return signed


# --- reading a node's store --------------------------------------------------------------------


def _read(db: Path, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """A read-only query on a SQLite store that another process may be writing (WAL)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def outbox_ids(fed: Federation, node: str) -> dict[str, list[UUID | None]]:
    """The message ids in ``node``'s outbox by status (pending ones have none yet)."""
    out: dict[str, list[UUID | None]] = {}
    for mid, status in _read(fed.db_path(node), "SELECT message_id, status FROM outbox"):
        out.setdefault(status, []).append(None if mid is None else UUID(bytes=mid))
    return out


def outbox_counts(fed: Federation, node: str) -> dict[str, int]:
    """How many items ``node``'s outbox holds by status (pending, signed, sent)."""
    db = fed.db_path(node)
    # Cheap enough to poll often: both queries read indexes, not the ~2 KB rows.
    total = int(_read(db, "SELECT count(*) FROM outbox")[0][0])
    unsent = "SELECT status, count(*) FROM outbox WHERE status <> 'sent' GROUP BY status"
    counts = {str(s): int(n) for s, n in _read(db, unsent)}
    if total > sum(counts.values()):
        counts["sent"] = total - sum(counts.values())
    return counts


def count_stored(fed: Federation, node: str) -> int:
    """How many records ``node`` has stored (0 before its store exists)."""
    if not fed.db_path(node).exists():
        return 0
    try:
        return int(_read(fed.db_path(node), "SELECT count(*) FROM records")[0][0])
    except sqlite3.OperationalError:  # the schema is not migrated yet
        return 0


def stored_times(fed: Federation, node: str) -> list[tuple[int, int]]:
    """(created_at, received_at) of every stored record, in microseconds since the epoch."""
    return [(int(a), int(b)) for a, b in _read(fed.db_path(node), _TIMES_SQL)]


_TIMES_SQL = "SELECT created_at, received_at FROM records"


async def stored_ids(fed: Federation, node: str, topic: str) -> list[UUID]:
    """The message ids of every record ``node`` stored on ``topic`` (withdrawn ones included)."""
    async with node_store(fed, node) as store:
        total = await store.count_records(topic)
        records = await store.list_records(topic=topic, include_withdrawn=True, limit=total + 1)
    return [r.message_id for r in records]


async def quarantine_of(fed: Federation, node: str, limit: int = 10_000) -> list[QuarantineEntry]:
    """Every quarantine entry of ``node``, oldest first."""
    async with node_store(fed, node) as store:
        entries = await store.list_quarantine(limit)
    return list(reversed(entries))


# --- waiting ---------------------------------------------------------------------------------


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    within_s: float,
    what: str,
    interval: float = 0.05,
    detail: Callable[[], str] | None = None,
    watch: Sequence[NodeProcess] = (),
) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``within_s``
    (with ``detail()``, e.g. a child's log tail, as it is at that moment), or as soon as a
    node process in ``watch`` has exited."""
    deadline = time.monotonic() + within_s
    while True:
        for node in watch:
            if not node.alive():
                raise AssertionError(
                    f"{node.config.parent.name} exited (code {node.exit_code()}) while waiting"
                    f" for {what}:\n{node.log_tail()}"
                )
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            more = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {within_s:.0f} s waiting for {what}{more}")
        await asyncio.sleep(interval)


# --- a node as a child process ------------------------------------------------------------------


@dataclass
class NodeProcess:
    """``exchange node run --config CONFIG`` as a child process, its output in ``log_path``.

    ``peak_rss_kb`` is the child's own peak resident set (``VmHWM``), read just before it is
    stopped or killed. (Not the rusage's ``ru_maxrss``: Linux keeps that across ``execve``,
    so it would count the forked parent's pages too.)
    """

    config: Path
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    peak_rss_kb: int = 0
    #: The same summed over the node and its descendants (the forkserver and the opening
    #: workers); shared pages count once per process, so this is an upper bound.
    peak_family_rss_kb: int = 0
    returncode: int | None = None
    _log: IO[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None, "already running"
        self._log = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "exchange.cli", "node", "run", "--config", str(self.config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**env, **self.env},
        )
        self.returncode = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not running"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        """The exit code once the child has exited (None while it runs or was never started)."""
        return self.returncode if self.proc is None else self.proc.poll()

    def vm_hwm_kb(self) -> int:
        """The running child's peak resident set so far (VmHWM), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmHWM in /proc/{self.pid}/status")

    def family_hwm_kb(self) -> int:
        """VmHWM summed over the running child and all its descendants, in KiB."""
        total = 0
        for pid in self._family():
            try:
                lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                continue
            total += next((int(x.split()[1]) for x in lines if x.startswith("VmHWM:")), 0)
        return total

    def family_cpu_s(self) -> float:
        """CPU seconds (user and system) the running child and its live descendants have
        used so far."""
        ticks = 0
        for pid in self._family():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def _family(self) -> set[int]:
        """The running child's pid and those of all its descendants."""
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            parents[int(stat.parent.name)] = int(fields[1])
        family, grew = {self.pid}, True
        while grew:
            more = {pid for pid, ppid in parents.items() if ppid in family} - family
            family |= more
            grew = bool(more)
        return family

    def _signal(self, sig: signal.Signals, timeout: float) -> int:
        proc = self.proc
        assert proc is not None, "not running"
        if proc.poll() is None:
            self.peak_rss_kb = self.vm_hwm_kb()
            self.peak_family_rss_kb = self.family_hwm_kb()
            proc.send_signal(sig)
        try:
            self.returncode = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"node process {proc.pid} did not exit in {timeout:.0f} s"
            ) from None
        finally:
            if self.returncode is not None:
                self.proc = None
                if self._log is not None:
                    self._log.close()
                    self._log = None
        return self.returncode

    def kill(self) -> int:
        """SIGKILL, as a crash or a power cut would; returns the exit code (-9)."""
        return self._signal(signal.SIGKILL, 10)

    def terminate(self, timeout: float = 40) -> int:
        """SIGTERM (a clean stop) and wait; returns the exit code."""
        return self._signal(signal.SIGTERM, timeout)

    def close(self) -> None:
        """Kill the child if it still runs (test clean-up)."""
        if self.proc is not None:
            self.kill()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
