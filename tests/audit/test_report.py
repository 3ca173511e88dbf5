"""The audit reports: JSON, terminal summary, progress bar and HTML (no broker)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from exchange.audit.checks import ChainChecker, RecordSummary
from exchange.audit.html import (
    MAX_BUCKETS,
    bucket_width_ms,
    duration,
    render_html,
    volume_svg,
    write_html,
)
from exchange.audit.replay import ReplayOutcome
from exchange.audit.report import (
    CHECKS,
    FORMAT,
    ProgressBar,
    build_report,
    summary_text,
    write_json,
)
from exchange.audit.tally import UNVERIFIED, Tally
from exchange.errors import InputError
from exchange.ids import NodeId
from exchange.keys import EncryptionKey, SigningKey
from exchange.trust import KeyEntry, Member, TrustList

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _trust() -> TrustList:
    members = [
        Member(
            NodeId(n),
            f"NCP {n}",
            (KeyEntry.for_key(SigningKey.generate().public_bytes, T0),),
            (KeyEntry.for_key(EncryptionKey.generate().public_bytes, T0),),
        )
        for n in ("FR", "DE")
    ]
    return TrustList(
        federation="eu-test",
        version=3,
        issued_at=T0,
        root_public_key=SigningKey.generate().public_bytes,
        members=members,
    )


TRUST = _trust()


def _summary(sender: str, seq: int, offset: int, **kw: Any) -> RecordSummary:
    base: dict[str, Any] = {
        "sender": sender,
        "message_type": "OffenceAlert",
        "message_id": f"{sender}-{seq}",
        "sequence": seq,
        "previous_hash": None if seq == 1 else f"{sender}{seq - 1}".encode(),
        "envelope_hash": f"{sender}{seq}".encode(),
        "tlp": "GREEN",
        "key_id": "k",
    }
    base.update(kw)
    return RecordSummary("ncp.alerts.v1", 0, offset, BASE_MS + offset * 60_000, **base)


def _outcome() -> ReplayOutcome:
    summaries = [
        _summary("FR", 1, 0),
        _summary("FR", 2, 1),
        _summary("DE", 1, 2),
        _summary("FR", 4, 3),
        RecordSummary(
            "ncp.alerts.v1", 0, 4, BASE_MS, error_reason="malformed", error_detail="<bad> & co"
        ),
    ]
    checker, tally = ChainChecker(), Tally()
    checker.add_many(summaries)
    tally.add_many(summaries)
    violations = checker.finish()
    by_kind: dict[str, int] = {}
    for v in violations:
        by_kind[v.kind] = by_kind.get(v.kind, 0) + 1
    return ReplayOutcome(violations, tally, checker.chains, 1.0, by_kind)


def _report() -> dict[str, Any]:
    return build_report(
        _outcome(),
        source={"kind": "kafka", "bootstrap": "127.0.0.1:9092"},
        trust=TRUST,
        replayed_at="2026-02-01T00:00:00+00:00",
        anchored=False,
    )


def test_json_report_is_self_describing() -> None:
    """The report names its format, source, trust list, checks, counts, violations, status."""
    r = _report()
    assert r["format"] == FORMAT
    assert r["trust_list"]["federation"] == "eu-test"
    assert r["trust_list"]["version"] == 3
    assert r["trust_list"]["members"] == ["DE", "FR"]
    assert set(r["checks"]["performed"]) == set(CHECKS)
    assert r["counts"]["records"] == 5
    assert r["counts"]["chains"] == 2
    assert r["violations_by_kind"] == {"malformed": 1, "sequence_gap": 1}
    assert [v["offset"] for v in r["violations"]] == [3, 4]
    assert (r["status"], r["exit_status"]) == ("violations", 1)
    assert r["time_range"]["first"] == "2026-01-01T00:00:00.000+00:00"


def test_json_report_is_deterministic(tmp_path: Path) -> None:
    """Two reports of the same replay are byte-identical, keys sorted."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_json(_report(), a)
    write_json(_report(), b)
    text = a.read_text()
    assert b.read_text() == text
    parsed = json.loads(text)
    assert text == json.dumps(parsed, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_write_json_to_a_bad_path_is_an_input_error(tmp_path: Path) -> None:
    """A report path that cannot be written: InputError naming --report's file."""
    with pytest.raises(InputError, match="nope"):
        write_json(_report(), tmp_path / "nope" / "r.json")


def test_summary_lists_counts_and_violations() -> None:
    """The terminal summary shows counts by sender, type and topic and violations by kind."""
    text = summary_text(_report())
    assert "records 5  verified 4  rejected 1  chains 2" in text
    assert "sender" in text
    assert "FR" in text
    assert "OffenceAlert" in text
    assert "ncp.alerts.v1" in text
    assert "sequence_gap" in text
    assert "status: violations (exit 1)" in text


def test_summary_truncates_long_violation_lists() -> None:
    """Beyond max_violations the summary says how many more are in the JSON report."""
    assert "and 1 more" in summary_text(_report(), max_violations=1)


def test_progress_bar_draws_on_a_tty_only() -> None:
    """The progress bar writes the count and rate on a TTY and nothing elsewhere."""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = ProgressBar(total=10, stream=stream)
        bar(10)
        bar.close()
    assert "10/10" in tty.getvalue()
    assert "msgs/s" in tty.getvalue()
    assert pipe.getvalue() == ""


def test_bucket_width_keeps_the_chart_readable() -> None:
    """Buckets are chosen so that a chart has at most MAX_BUCKETS bars."""
    assert bucket_width_ms(0, 10_000) == 1_000
    for span in (59_000, 3_600_000, 86_400_000 * 3, 86_400_000 * 5000):
        assert span // bucket_width_ms(0, span) < MAX_BUCKETS


def test_volume_chart_has_one_colour_per_member_and_a_legend() -> None:
    """The SVG stacks bars per member, each member in its colour, named in the legend."""
    tally = _outcome().tally
    svg = volume_svg(tally.times)
    assert svg.startswith("<svg")
    assert "FR (3)" in svg
    assert "DE (1)" in svg
    assert f"{UNVERIFIED} (1)" in svg
    assert svg.count("<rect") >= 4 + 3


def test_html_report_is_self_contained_and_escaped(tmp_path: Path) -> None:
    """The HTML has the chart, the counts and the violations, no scripts, text escaped."""
    report = _report()
    page = render_html(report, _outcome().tally.times)
    assert "<svg" in page
    assert "<script" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "&lt;bad&gt; &amp; co" in page
    assert "sequence_gap" in page
    path = tmp_path / "r.html"
    write_html(report, _outcome().tally.times, path)
    assert path.read_text() == page


def test_bucket_widths_are_named_in_words() -> None:
    """The chart names its bucket width in seconds, minutes, hours or days."""
    assert [duration(ms) for ms in (1_000, 300_000, 3_600_000, 604_800_000, 90_000)] == [
        "1 s",
        "5 min",
        "1 h",
        "7 d",
        "90 s",
    ]


def test_summary_warns_of_topics_not_read() -> None:
    """Federation topics missing on the cluster are named as a warning in the summary."""
    report = _report()
    report["source"] = {**report["source"], "missing_topics": ["ncp.blacklist.v1"]}
    assert "warning: not on the cluster, not read: ncp.blacklist.v1" in summary_text(report)


def test_violations_past_the_listing_limit_are_counted_and_fail_the_audit() -> None:
    """Counted-but-unlisted violations show in the counts, the summary and the exit status,
    even when none is listed."""
    outcome = _outcome()
    outcome = ReplayOutcome(
        [], outcome.tally, outcome.chains, 1.0, {"malformed": 7}, [], {"malformed": 7}
    )
    r = build_report(
        outcome,
        source={"kind": "kafka", "bootstrap": "127.0.0.1:9092"},
        trust=TRUST,
        replayed_at="2026-02-01T00:00:00+00:00",
        anchored=False,
    )
    assert r["violations"] == []
    assert r["violations_unlisted"] == {"malformed": 7}
    assert (r["status"], r["exit_status"]) == ("violations", 1)
    assert "7 more counted but not listed" in summary_text(r)
