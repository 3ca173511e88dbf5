"""The HTML report: one self-contained page, no scripts, no network.

It shows the source and trust list, the counts, the violations table and an inline
SVG chart of message volume per member over time: stacked bars, one colour per
member (records that failed verification in grey), with a legend. Buckets are chosen
automatically so that the chart has at most :data:`MAX_BUCKETS` bars.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from exchange.audit.tally import UNVERIFIED, iso_ms
from exchange.errors import InputError

MAX_BUCKETS = 60
#: Candidate bucket widths in seconds: 1 s .. 30 days.
BUCKETS_S = (1, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#e6550d",
)
GREY = "#9e9e9e"
W, H, LEFT, BOTTOM, TOP = 900, 320, 60, 40, 10


def bucket_width_ms(first_ms: int, last_ms: int) -> int:
    """The smallest candidate width giving at most MAX_BUCKETS buckets over the range."""
    span = max(last_ms - first_ms, 1)
    for seconds in BUCKETS_S:
        if span / (seconds * 1000) < MAX_BUCKETS:
            return seconds * 1000
    return BUCKETS_S[-1] * 1000 * (span // (BUCKETS_S[-1] * 1000 * MAX_BUCKETS) + 1)


def duration(ms: int) -> str:
    """A bucket width in words: "30 s", "5 min", "1 h", "7 d"."""
    seconds = ms // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:,} {unit}"
    return f"{seconds:,} s"


def colours(members: list[str]) -> dict[str, str]:
    """One colour per member, stable for a sorted member list; unverified in grey."""
    out: dict[str, str] = {}
    i = 0
    for m in members:
        if m == UNVERIFIED:
            out[m] = GREY
        else:
            out[m] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def volume_svg(times: Mapping[str, array[int]]) -> str:
    """Stacked bars of record counts per member per time bucket, with axes and a legend."""
    members = sorted(m for m, ts in times.items() if len(ts))
    if not members:
        return "<p>No records.</p>"
    first = min(min(times[m]) for m in members)
    last = max(max(times[m]) for m in members)
    width = bucket_width_ms(first, last)
    start = first - first % width
    n = (last - start) // width + 1
    counts = {m: [0] * n for m in members}
    for m in members:
        row = counts[m]
        for ts in times[m]:
            row[(ts - start) // width] += 1
    peak = max(sum(counts[m][i] for m in members) for i in range(n))
    colour = colours(members)
    plot_w, plot_h = W - LEFT - 10, H - BOTTOM - TOP
    bar_w = plot_w / n
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H + 24 * len(members)}" '
        f'role="img" aria-label="message volume per member over time">',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#333"/>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" '
        'stroke="#333"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end" font-size="11">{peak:,}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    for i in range(n):
        y = float(TOP + plot_h)
        label = f"{iso_ms(start + i * width)} (+{duration(width)})"
        for m in members:
            c = counts[m][i]
            if not c:
                continue
            h = c / peak * plot_h
            y -= h
            parts.append(
                f'<rect x="{LEFT + i * bar_w:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 0.5):.1f}" '
                f'height="{h:.1f}" fill="{colour[m]}"><title>{escape(m)}: {c:,} at '
                f"{escape(label)}</title></rect>"
            )
    for x, text, anchor in (
        (LEFT, iso_ms(start), "start"),
        (LEFT + plot_w, iso_ms(start + n * width), "end"),
    ):
        parts.append(
            f'<text x="{x}" y="{TOP + plot_h + 16}" text-anchor="{anchor}" '
            f'font-size="11">{escape(text)}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h + 32}" text-anchor="middle" '
        f'font-size="11">records per {duration(width)}</text>'
    )
    for k, m in enumerate(members):
        y = H + 24 * k
        total = sum(counts[m])
        parts.append(
            f'<rect x="{LEFT}" y="{y}" width="14" height="14" fill="{colour[m]}"/>'
            f'<text x="{LEFT + 20}" y="{y + 12}" font-size="12">{escape(m)} ({total:,})</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _rows(mapping: Mapping[str, Any], cls: str) -> str:
    return "".join(
        f"<tr><td>{escape(str(k))}</td><td{cls}>{escape(str(v))}</td></tr>"
        for k, v in mapping.items()
    )


def _section(
    title: str, mapping: Mapping[str, Any], head: str = "count", *, numbers: bool = True
) -> str:
    return (
        f"<h3>{escape(title)}</h3><table><tr><th></th><th>{escape(head)}</th></tr>"
        f"{_rows(mapping, ' class=n' if numbers else '')}</table>"
    )


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
td.n{text-align:right}.clean{color:#2a7a2a}.violations{color:#b00020}
.grid{display:flex;flex-wrap:wrap;gap:2em}
"""


def render_html(report: Mapping[str, Any], times: Mapping[str, array[int]]) -> str:
    """The whole page for a JSON report (see :mod:`exchange.audit.report`)."""
    counts = report["counts"]
    trust = report["trust_list"]
    src = report["source"]
    status = report["status"]
    topics = {
        t: f"{c['records']:,} ({c['rejected']:,} rejected)" for t, c in counts["by_topic"].items()
    }
    violations = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape('' if v[k] is None else str(v[k]))}</td>"
            for k in ("kind", "topic", "partition", "offset", "sender", "message_id", "reason")
        )
        + "</tr>"
        for v in report["violations"]
    )
    where = src.get("bootstrap") or src.get("archive") or ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Audit replay: {escape(trust["federation"])}</title><style>{STYLE}</style></head>
<body>
<h1>Audit replay of {escape(trust["federation"])}</h1>
<p class="{status}"><strong>Status: {escape(status)}</strong>
({len(report["violations"]):,} violations, exit {report["exit_status"]})</p>
<p>Replayed at {escape(report["replayed_at"])} from {escape(src.get("kind", ""))}
{escape(str(where))}; records from {escape(str(report["time_range"]["first"]))}
to {escape(str(report["time_range"]["last"]))}. Trust list version {trust["version"]}
(issued {escape(trust["issued_at"])}, root key {escape(trust["root_key_id"])}).</p>
<h2>Message volume per member</h2>
{volume_svg(times)}
<h2>Counts</h2>
<p>{counts["records"]:,} records, {counts["verified"]:,} verified,
{counts["rejected"]:,} rejected, {counts["chains"]:,} chains.</p>
<div class="grid">
{_section("By sender", counts["by_sender"])}
{_section("By message type", counts["by_message_type"])}
{_section("By topic", topics, "records", numbers=False)}
{_section("By TLP", counts["by_tlp"])}
{_section("Violations by kind", report["violations_by_kind"])}
</div>
<h2>Violations</h2>
<table><tr><th>kind</th><th>topic</th><th>partition</th><th>offset</th><th>sender</th>
<th>message id</th><th>reason</th></tr>{violations}</table>
<h2>Checks performed</h2>
{_section("Check", report["checks"]["performed"], "meaning", numbers=False)}
<p>Chain start: {escape(report["checks"]["chain_start"])}.
Anchored topics: {escape(", ".join(report["checks"]["anchored_topics"]) or "none")}.</p>
</body></html>
"""


def write_html(report: Mapping[str, Any], times: Mapping[str, array[int]], path: Path) -> None:
    """Write the HTML report."""
    try:
        path.write_text(render_html(report, times), encoding="utf-8")
    except OSError as exc:
        raise InputError([("html", f"{path}: {exc.strerror or exc}")]) from None
