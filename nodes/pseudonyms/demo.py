"""The pseudonym part of ``make demo`` (called from nodes.demo while the daemons run).

DE's cyber patrol imports its pseudonyms; FR asks, blinded, about a handle DE holds
(typed differently): DE answers HIT with a case reference and contact unit, NL NO_HIT.
FR requests the details; DE's duty officer sees the request pending and approves it;
the details reach FR. An auditor then checks that every answer follows a query and the
disclosure follows its approval. Everything goes through the ``exchange`` commands.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from nodes.config import load_config
from nodes.pseudonyms.repo import repo_for
from nodes.store.opened import opened_store

Run = Callable[..., subprocess.CompletedProcess[str]]

PATROL_CSV = """\
platform,handle,case_reference,contact_unit,first_seen,last_seen
Telegram,@dark_seller42,DE-BKA-2026-117,BKA SO41 cyber patrol,2026-10-01,2026-11-20
Telegram,pharma_king,DE-BKA-2026-121,BKA SO41 cyber patrol,2026-10-12,
Reddit,u/Carder_Joe,DE-LKA-BW-5521,LKA Baden-Wuerttemberg,2026-09-03,2026-11-02
Telegram,bad handle with spaces,DE-BKA-2026-130,BKA SO41 cyber patrol,2026-10-01,
"""
TIMEOUT_S = 90.0


async def _details_at(config: Path, query_id: str) -> str | None:
    settings = load_config(config)
    async with opened_store(settings.store.url) as store:
        topic = f"{settings.kafka.topic_prefix}.pseudonyms.v1"
        for _sender, _at, payload in await repo_for(store).responses(topic, query_id):
            if payload.get("outcome") == "DETAILS":
                return str(payload.get("details"))
        return None


def _wait(what: str, check: Callable[[], str | None]) -> str:
    deadline = time.monotonic() + TIMEOUT_S
    while (found := check()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"demo: {what} did not happen within {TIMEOUT_S:.0f} s")
        time.sleep(0.5)
    return found


def run(
    folder: Path,
    configs: dict[str, Path],
    bootstrap: str,
    prefix: str,
    exchange: Run,
    say: Callable[[str], None],
) -> bool:
    """The pseudonym demo; whether everything came out as it should."""
    say("\npseudonyms: DE's cyber patrol imports its handles (one bad row is refused):")
    csv = folder / "de-patrol.csv"
    csv.write_text(PATROL_CSV, encoding="utf-8")
    done = exchange("pseudonym", "import", "--config", str(configs["DE"]), str(csv), check=False)
    say((done.stderr + done.stdout).rstrip())
    say("FR asks every member about '@Dark_Seller42' on Telegram (only a keyed hash travels):")
    asked = exchange(
        "pseudonym", "query", "--config", str(configs["FR"]), "--platform", "Telegram",
        "--handle", "@Dark_Seller42", "--timeout", str(TIMEOUT_S),
    )  # fmt: skip
    say(asked.stdout.rstrip())
    query_id = asked.stdout.split()[1]
    hit = "DE: HIT case DE-BKA-2026-117" in asked.stdout and "NL: NO_HIT" in asked.stdout
    say("FR requests the details from DE; they wait for a person at DE:")
    requested = exchange(
        "pseudonym", "query", "--config", str(configs["FR"]), "--platform", "Telegram",
        "--handle", "@Dark_Seller42", "--to", "DE", "--follow-up-of", query_id,
        "--case", "DE-BKA-2026-117", "--timeout", "0",
    )  # fmt: skip
    request_id = requested.stdout.split()[3]
    say(requested.stdout.rstrip())

    def pending() -> str | None:
        out = exchange("pseudonym", "pending", "--config", str(configs["DE"])).stdout
        return out if request_id in out else None

    say("DE: exchange pseudonym pending\n" + _wait("the request reaching DE", pending).rstrip())
    approved = exchange(
        "pseudonym", "approve", "--config", str(configs["DE"]), request_id,
        "--actor", "cli:de-duty-officer", "--justification", "match confirmed, JIT 2026/04",
    )  # fmt: skip
    say("DE: " + approved.stdout.rstrip())
    details = _wait(
        "the details reaching FR", lambda: asyncio.run(_details_at(configs["FR"], request_id))
    )
    say(f"FR received the details, encrypted for FR alone: {details}")
    log = folder / "de-audit.jsonl"
    log.write_text(exchange("pseudonym", "audit-log", "--config", str(configs["DE"])).stdout)
    audit = exchange(
        "audit", "pseudonyms", "--bootstrap", bootstrap, "--prefix", prefix,
        "--trust", str(folder / "trust.list"), "--audit-log", f"DE={log}", check=False,
    )  # fmt: skip
    say("an auditor checks answers against queries and DE's disclosure against its approval:")
    say(audit.stdout.rstrip())
    if audit.returncode != 0:
        say(f"exit code {audit.returncode}: {audit.stderr.rstrip()}")
    return hit and audit.returncode == 0
