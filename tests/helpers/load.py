"""A CPU hog: busy loops on every core, so that tests meet the scheduling a busy CI has.

Races between the client's background tasks and ours only show when the event loop is
starved; a test that must prove something holds *under load* runs inside
:func:`cpu_hog`, and ``make test-stress`` runs the whole suite beside the same hog
(``python -m tests.helpers.load``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: Spins until its parent is gone, so a hog never outlives whoever started it.
BUSY_LOOP = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass\n"


def hog_processes(count: int | None = None) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` (default: one per core) busy-looping child processes."""
    n = count if count is not None else os.cpu_count() or 1
    return [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(n)]


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.kill()
    for process in processes:
        process.wait()


@contextmanager
def cpu_hog(count: int | None = None) -> Iterator[None]:
    """Busy loops on ``count`` (default: every) core for the duration of the block."""
    processes = hog_processes(count)
    try:
        yield
    finally:
        stop_processes(processes)


def main() -> None:
    """Hog every core until SIGTERM or SIGINT (the stress script's hog)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    processes = hog_processes()
    try:
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        stop_processes(processes)


if __name__ == "__main__":
    main()
