"""The blacklist part of ``make demo`` (called by ``nodes.demo`` while the daemons run).

FR and NL each list the same site on their own list (``fr.csam``, ``nl.csam``; NL writes
it in another case with a trailing dot: normalization makes it one entry) and one site
alone; DE's rule for the joint list ``csam`` wants two members, so DE's RPZ export holds
only the shared site (checked by ``named-checkzone`` when BIND's tools are installed).
FR then removes its listing, and DE's next export no longer has it, with a higher serial.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

TIMEOUT_S = 60.0


def _exchange(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "exchange.cli", *args], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"exchange {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _versions(config: Path) -> dict[str, int]:
    shown = json.loads(_exchange("blacklist", "show", "--config", str(config), "--limit", "0"))
    return {str(k): int(v) for k, v in shown["versions"].items()}


def _wait_versions(config: Path, want: Mapping[str, int]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        have = _versions(config)
        if all(have.get(k, 0) >= v for k, v in want.items()):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"DE holds list versions {have}, expected {dict(want)}")
        time.sleep(0.5)


def _export(config: Path, out: Path) -> list[str]:
    print(
        _exchange(
            "blacklist",
            "export",
            "--config",
            str(config),
            "--format",
            "rpz",
            "--joint",
            "csam",
            "--out",
            str(out),
        ).rstrip()
    )
    text = out.read_text()
    print("\n".join("    " + line for line in text.splitlines()))
    if shutil.which("named-checkzone"):
        check = subprocess.run(
            ["named-checkzone", "rpz.ncp.invalid", str(out)], capture_output=True, text=True
        )
        print(f"    named-checkzone: {check.stdout.strip().splitlines()[-1]}")
        if check.returncode != 0:
            raise RuntimeError(f"named-checkzone refused the zone: {check.stdout}")
    return [ln for ln in text.splitlines() if ln.endswith("CNAME .")]


def run_blacklist_demo(folder: Path, configs: Mapping[str, Path]) -> bool:
    """Run the blacklist scenario; True when every step showed what it should."""
    print("\njoint blacklist: FR and NL list entries, DE exports under a two-member rule")
    with configs["DE"].open("a") as fh:
        fh.write("\n[blacklist.lists.csam]\nmin_members = 2\n")
    try:
        fr_file = folder / "fr-csam.txt"
        fr_file.write_text("DOMAIN csam-host.example\nDOMAIN fr-only.example\n")
        nl_file = folder / "nl-csam.txt"
        nl_file.write_text("DOMAIN CSAM-Host.Example.\nDOMAIN nl-only.example\n")
        print(
            _exchange(
                "blacklist",
                "add",
                "--config",
                str(configs["FR"]),
                "--list",
                "fr.csam",
                "--file",
                str(fr_file),
            ).rstrip()
        )
        print(
            _exchange(
                "blacklist",
                "add",
                "--config",
                str(configs["NL"]),
                "--list",
                "nl.csam",
                "--file",
                str(nl_file),
            ).rstrip()
        )
        _wait_versions(configs["DE"], {"fr.csam": 1, "nl.csam": 1})
        out = folder / "de-csam.rpz"
        first = _export(configs["DE"], out)
        confirmed = first == ["csam-host.example CNAME .", "*.csam-host.example CNAME ."]
        print(f"only the entry both FR and NL list is exported: {confirmed}")
        rm_file = folder / "fr-remove.txt"
        rm_file.write_text("DOMAIN csam-host.example\n")
        print(
            _exchange(
                "blacklist",
                "remove",
                "--config",
                str(configs["FR"]),
                "--list",
                "fr.csam",
                "--file",
                str(rm_file),
            ).rstrip()
        )
        _wait_versions(configs["DE"], {"fr.csam": 2})
        second = _export(configs["DE"], out)
        print(f"FR's removal is gone from DE's next export: {second == []}")
        return confirmed and second == []
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        print(f"blacklist demo FAILED: {exc}")
        return False
