"""``make test-stress``: the whole suite N times in a fresh clone, beside a CPU hog.

A race shows on a busy machine and hides on a quiet one. This clones the committed HEAD
into a temporary folder (so nothing uncommitted or cached here helps), lets the clone set
itself up as a user's would (``make install``), starts a busy loop on every core, runs
``make test`` there N times, each with a broker of its own on free ports (started and
wiped by the test session, as in CI), and prints each test that failed with how often::

    make test-stress                  # N=5
    make test-stress STRESS_RUNS=10   # or: python -m tests.stress 10 [-- PYTEST ARGS]

Exit 0 when every run passed, 1 otherwise. The clone is removed at the end unless
``--keep`` is given; each run's JUnit report and output stay there for reading.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from tests.helpers.broker import free_port

REPO = Path(__file__).resolve().parents[1]


def _failures(report: Path) -> list[str]:
    """The ids of the tests that failed or errored in a JUnit report."""
    if not report.exists():
        return ["<no report: the run ended before pytest wrote one>"]
    failed = []
    # The report is our own pytest run's output, not untrusted input.
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314
        if case.find("failure") is not None or case.find("error") is not None:
            name = case.get("classname", "").replace(".", "/") + ".py::" + case.get("name", "")
            failed.append(name)
    return failed


def _run(cmd: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None) -> int:
    with log.open("wb") as out:
        return subprocess.run(
            cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env
        ).returncode


def _own_broker_env() -> dict[str, str]:
    """The environment of one run: as in CI, the test session starts a broker of its own
    (on free ports) and wipes it at the end, so no run inherits another's topics."""
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["NCP_KAFKA_PORT"] = str(free_port())
    env["NCP_KAFKA_CONTROLLER_PORT"] = str(free_port())
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make test-stress", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="?", type=int, default=5, help="how many runs (5)")
    parser.add_argument("--keep", action="store_true", help="keep the clone afterwards")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args(argv)
    if subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=REPO).returncode != 0:
        print("test-stress: uncommitted changes are not tested (the clone is of HEAD)")
    work = Path(tempfile.mkdtemp(prefix="ncp-stress-"))
    clone = work / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    print(f"test-stress: fresh clone in {clone}; setting it up (make install)", flush=True)
    if _run(["make", "install"], clone, work / "install.log") != 0:
        print(f"test-stress: make install failed; see {work / 'install.log'}")
        return 1
    hog = subprocess.Popen([sys.executable, "-m", "tests.helpers.load"], cwd=REPO)
    failures: Counter[str] = Counter()
    failed_runs = 0
    try:
        for run in range(1, args.runs + 1):
            report = work / f"run-{run}.xml"
            pytest_args = " ".join(
                [f"--junitxml={report}", "-p no:cacheprovider", *args.pytest_args]
            )
            started = time.monotonic()
            code = _run(
                ["make", "test", f"PYTEST_ARGS={pytest_args}"],
                clone,
                work / f"run-{run}.log",
                _own_broker_env(),
            )
            took = time.monotonic() - started
            failed = _failures(report) if code != 0 else []
            if code != 0 and not failed:
                failed = [f"<make test exited {code} with no failed test; see run-{run}.log>"]
            failures.update(failed)
            failed_runs += bool(failed)
            verdict = "passed" if not failed else f"FAILED ({len(failed)} tests)"
            print(f"test-stress: run {run}/{args.runs} {verdict} in {took:.0f} s", flush=True)
    finally:
        hog.terminate()
        hog.wait()
    print(f"\ntest-stress: {args.runs - failed_runs} of {args.runs} runs passed beside a CPU hog")
    for name, count in failures.most_common():
        print(f"  {count}/{args.runs}  {name}")
    if args.keep or failures:
        print(f"test-stress: reports and logs in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
