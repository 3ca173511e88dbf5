"""A private three-broker KRaft cluster (``deploy/kafka/cluster.sh``) for failure tests.

:class:`LocalCluster` starts three combined broker-controllers on free loopback ports
(replication 3 for Kafka's own topics, ``min.insync.replicas`` 2, no topic auto-creation),
kills (SIGKILL) and restarts one node at a time, and reads which broker leads a partition
and which replicas are in sync.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient

from tests.helpers.broker import REPO, BrokerUnavailableError, free_port

CLUSTER_SH = REPO / "deploy" / "kafka" / "cluster.sh"


@dataclass
class LocalCluster:
    """Three brokers (nodes 1, 2, 3) on ``ports`` with controllers on ``controller_ports``."""

    ports: tuple[int, int, int] = field(default_factory=lambda: _three())
    controller_ports: tuple[int, int, int] = field(default_factory=lambda: _three())
    start_timeout_s: int = 180

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "NCP_CLUSTER_PORTS": ",".join(map(str, self.ports)),
            "NCP_CLUSTER_CONTROLLER_PORTS": ",".join(map(str, self.controller_ports)),
            "NCP_KAFKA_START_TIMEOUT_S": str(self.start_timeout_s),
        }

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def _run(self, *args: str, timeout_s: float | None = None) -> None:
        done = subprocess.run(
            [str(CLUSTER_SH), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s or self.start_timeout_s + 120,
            check=False,
        )
        if done.returncode != 0:
            raise BrokerUnavailableError(f"cluster.sh {' '.join(args)}: {done.stderr.strip()}")

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")

    def reset(self) -> None:
        self._run("reset")

    def kill(self, node: int) -> None:
        """SIGKILL node 1, 2 or 3, as a crash would."""
        self._run("kill", str(node), timeout_s=60)

    def restart(self, node: int) -> None:
        """Start node 1, 2 or 3 again and wait until it answers."""
        self._run("restart", str(node))

    def bootstrap_without(self, *down: int) -> str:
        """The bootstrap list without the nodes that are down."""
        return ",".join(f"127.0.0.1:{p}" for i, p in enumerate(self.ports, 1) if i not in down)


def _three() -> tuple[int, int, int]:
    return free_port(), free_port(), free_port()


async def partition_state(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int]]]:
    """``{partition: (leader node id, in-sync replicas)}`` of ``topic`` (leader -1: none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {p["partition"]: (p["leader"], list(p["isr"])) for p in described["partitions"]}


async def wait_in_sync(bootstrap: str, topic: str, replicas: int, timeout_s: float = 180) -> None:
    """Wait until every partition of ``topic`` has a leader and ``replicas`` in-sync replicas."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                state = await partition_state(bootstrap, topic)
            except Exception:
                state = {}
            if state and all(lead >= 0 and len(isr) >= replicas for lead, isr in state.values()):
                return
            await asyncio.sleep(0.5)
