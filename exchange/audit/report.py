"""The replay's reports: a terminal summary, a progress bar, and the JSON report.

The JSON report is what an auditor files as proof, so it is deterministic (every
mapping sorted, violations sorted by place then kind, no timings) and
self-describing: it names its format, the source read (cluster or archive, topics,
the offset range of every partition, the time filter), the trust list used
(federation, version, issue time, root key id, members), the replay time the
records were judged at, every check performed with what it means, the counts, every
violation and the exit status.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from exchange.audit.checks import ChainKind
from exchange.audit.replay import ReplayOutcome
from exchange.errors import InputError, Reason
from exchange.trust import TrustList

FORMAT = "ncp-exchange/audit-report"
FORMAT_VERSION = 1

#: Every check the replay performs: violation kind -> what it means.
CHECKS: dict[str, str] = {
    Reason.MALFORMED.value: "the record value does not decode as a SignedEnvelope/Envelope",
    Reason.UNKNOWN_SCHEMA.value: "the record names a schema fingerprint no known schema has",
    Reason.UNDECODABLE_BATCH.value: "a record batch fails its CRC or does not decompress",
    Reason.BAD_SIGNATURE.value: "the Ed25519 signature does not verify over the envelope bytes",
    Reason.UNKNOWN_KEY.value: "the signing key is not in the trust list",
    Reason.UNKNOWN_SENDER.value: "the sender is not a member of the federation",
    Reason.KEY_NOT_VALID_AT_TIME.value: "the key was outside its validity window when used",
    Reason.REVOKED_KEY.value: "the key was used at or after its revocation",
    Reason.SENDER_KEY_MISMATCH.value: "the key belongs to another member than the sender",
    Reason.WRONG_TOPIC.value: "the record was written for another topic (moved)",
    Reason.WRONG_KEY.value: "the record was written for another record key (moved)",
    Reason.TYPE_NOT_ALLOWED.value: "the message type may not travel on the topic",
    Reason.FROM_THE_FUTURE.value: "created_at after the record's append time (beyond the skew)",
    Reason.BACKDATED.value: "created_at before the record's append time (beyond the skew)",
    Reason.ID_TIME_MISMATCH.value: "the message id's UUIDv7 time disagrees with created_at",
    Reason.WRAPPED_KEYS_MISMATCH.value: "the content key is wrapped for others than recipients",
    Reason.HANDLING_INCONSISTENT.value: "handling rules broken (e.g. TLP:RED with no recipients)",
    ChainKind.SEQUENCE_GAP.value: "a sequence number of a (sender, topic) chain is missing",
    ChainKind.FORK.value: "two different envelopes carry one sequence number of a chain",
    ChainKind.CHAIN_BREAK.value: "previous_hash is not the hash of the envelope before it",
    ChainKind.DUPLICATE_MESSAGE_ID.value: "a message id appears more than once",
}


def trust_description(trust: TrustList) -> dict[str, Any]:
    """The trust list's identity, as the report names it."""
    return {
        "federation": trust.federation,
        "version": trust.version,
        "issued_at": trust.issued_at.isoformat(),
        "root_key_id": trust.root_key_id,
        "members": sorted(trust.members),
        "revoked_keys": sorted(trust.revocations),
    }


def build_report(
    outcome: ReplayOutcome,
    *,
    source: Mapping[str, Any],
    trust: TrustList,
    replayed_at: str,
    anchored: bool,
) -> dict[str, Any]:
    """The JSON report as a mapping (see the module doc)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "replayed_at": replayed_at,
        "source": dict(source),
        "trust_list": trust_description(trust),
        "checks": {
            "performed": dict(sorted(CHECKS.items())),
            "chain_start": (
                "the first message seen anchors each chain (replay from a time)"
                if anchored
                else "every chain must start at sequence 1 (replay from the beginning), "
                "except on anchored_topics, whose oldest records were deleted (retention): "
                "there the first message seen anchors each chain"
            ),
            "anchored_topics": [] if anchored else outcome.anchored_topics,
        },
        "time_range": outcome.tally.time_range(),
        "counts": {**outcome.tally.as_dict(), "chains": outcome.chains},
        "violations_by_kind": dict(sorted(outcome.by_kind.items())),
        "violations": [v.as_dict() for v in outcome.violations],
        # Counted in violations_by_kind, not listed: past the replay's listing limit.
        "violations_unlisted": dict(sorted(outcome.unlisted.items())),
        "status": "violations" if outcome.exit_status else "clean",
        "exit_status": outcome.exit_status,
    }


def write_json(report: Mapping[str, Any], path: Path) -> None:
    """Write the report, keys sorted, UTF-8, newline-terminated."""
    text = json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError([("report", f"{path}: {exc.strerror or exc}")]) from None


def _table(title: str, rows: list[tuple[str, str]]) -> list[str]:
    if not rows:
        return [f"{title}: none"]
    width = max(len(title), *(len(k) for k, _ in rows))
    vwidth = max(len(v) for _, v in rows)
    out = [f"{title.ljust(width)}  {'count'.rjust(vwidth)}", "-" * (width + 2 + max(vwidth, 5))]
    out += [f"{k.ljust(width)}  {v.rjust(max(vwidth, 5))}" for k, v in rows]
    return out


def summary_text(report: Mapping[str, Any], *, max_violations: int = 20) -> str:
    """The terminal summary: counts by sender, type and topic; violations by kind."""
    counts = report["counts"]
    tr = report["time_range"]
    lines = [
        f"records {counts['records']:,}  verified {counts['verified']:,}  "
        f"rejected {counts['rejected']:,}  chains {counts['chains']:,}",
        f"time range {tr['first'] or '-'} .. {tr['last'] or '-'}",
    ]
    missing = report["source"].get("missing_topics")
    if missing:
        lines.append(f"warning: not on the cluster, not read: {', '.join(missing)}")
    lines.append("")
    for title, key in (
        ("sender", "by_sender"),
        ("message type", "by_message_type"),
        ("wire version", "by_wire_version"),
    ):
        lines += [*_table(title, [(k, f"{v:,}") for k, v in counts[key].items()]), ""]
    topics = [
        (t, f"{c['records']:,} ({c['rejected']:,} rejected)") for t, c in counts["by_topic"].items()
    ]
    lines += [*_table("topic", topics), ""]
    lines += _table("violation", [(k, f"{v:,}") for k, v in report["violations_by_kind"].items()])
    shown = report["violations"][:max_violations]
    if shown:
        lines.append("")
    for v in shown:
        who = f" {v['sender']}" if v["sender"] else ""
        lines.append(
            f"{v['kind']} {v['topic']}[{v['partition']}]@{v['offset']}{who}: {v['reason']}"
        )
    hidden = len(report["violations"]) - len(shown)
    if hidden > 0:
        lines.append(f"... and {hidden:,} more (see the JSON report)")
    unlisted = sum(report.get("violations_unlisted", {}).values())
    if unlisted:
        lines.append(f"... and {unlisted:,} more counted but not listed (past the listing limit)")
    lines += ["", f"status: {report['status']} (exit {report['exit_status']})"]
    return "\n".join(lines)


class ProgressBar:
    """A one-line progress bar with the rate (msgs/s) on a TTY; silent otherwise."""

    def __init__(self, total: int | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.total = total
        self._started = time.perf_counter()
        self._shown = 0.0

    def __call__(self, done: int) -> None:
        """Report ``done`` records so far (redrawn at most ten times a second)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._shown < 0.1 and done != self.total:
            return
        self._shown = now
        rate = done / max(now - self._started, 1e-9)
        if self.total:
            filled = min(30, done * 30 // self.total)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {done:,}/{self.total:,}"
        else:
            bar = f"{done:,} records"
        self.stream.write(f"\r{bar}  {rate:,.0f} msgs/s ")
        self.stream.flush()

    def close(self) -> None:
        """End the progress line."""
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
