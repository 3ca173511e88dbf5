"""Render a statistics :class:`~nodes.stats.report.Report`: terminal table, CSV, JSON, charts.

Charts are matplotlib on the Agg backend, built as a bare :class:`~matplotlib.figure.Figure`
(no pyplot, no global state): :func:`figure` gives one panel per offence category (plus one
for counts without a category when there are any), one line per member over the periods, for
one measure. A suppressed count is a gap in its line (``NaN``; the true value is not known
to anyone but its sender) and the panel titles say so. The HTML page embeds the same
figures (PNG, base64) and the table. Which file is written follows ``--out``'s suffix.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exchange.errors import InputError
from exchange.models import IndicatorMeasure, OffenceCategory
from nodes.stats.report import Report, Row

if TYPE_CHECKING:  # matplotlib is imported when a chart is drawn: every CLI call would pay
    from matplotlib.figure import Figure

#: The panel of counts that have no offence category (blacklist removals, unknown queries).
NO_CATEGORY = "(no category)"
COLUMNS = (
    "member",
    "period",
    "period_start",
    "period_end",
    "measure",
    "category",
    "reason",
    "shown",
    "count",
    "suppressed_below",
    "revision",
    "replaced",
    "message_id",
)
SUFFIXES = (".csv", ".json", ".png", ".html")


def _cell(row: Row) -> str:
    return row.category or (f"reason {row.reason}" if row.reason else NO_CATEGORY)


def _replaced(row: Row) -> str:
    return ",".join(f"r{r}" for r in row.replaced)


def table(report: Report) -> str:
    """The terminal table: per period, one row per measure and category (or reason), one
    column per member; each member's revision and what it replaced in the period's header.
    Rows where every member shows 0 or a suppressed count are left out (the files keep
    them)."""
    by_period: dict[tuple[date, str], list[Row]] = defaultdict(list)
    for r in report.rows:
        by_period[(r.period_start, r.period)].append(r)
    lines: list[str] = []
    left_out = 0
    for (_, label), rows in sorted(by_period.items()):
        members = sorted({r.member for r in rows})
        heads = []
        for m in members:
            first = next(r for r in rows if r.member == m)
            heads.append(
                f"{m} r{first.revision}"
                + (f" (replaces {_replaced(first)})" if first.replaced else "")
            )
        lines.append(f"period {label}: " + "; ".join(heads))
        cells: dict[tuple[str, str], dict[str, Row]] = defaultdict(dict)
        for r in rows:
            cells[(r.measure, _cell(r))][r.member] = r
        header = f"  {'measure':<27} {'category / reason':<31}" + "".join(
            f" {m:>7}" for m in members
        )
        lines += [header, "  " + "-" * (len(header) - 2)]
        for (measure, name), row in cells.items():
            if all(r.count in (0, None) for r in row.values()):
                left_out += 1
                continue
            values = "".join(f" {row[m].shown if m in row else '':>7}" for m in members)
            lines.append(f"  {measure:<27} {name:<31}{values}")
    if not report.rows:
        lines.append("(no indicators in the window)")
    elif left_out:
        lines.append(
            f"({left_out} rows where every member shows 0 or <N left out; --out keeps all)"
        )
    for a in report.set_aside:
        lines.append(f"set aside: {a.member} {a.message_id}: {a.reason}")
    return "\n".join(lines) + "\n"


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in report.rows:
        d = asdict(r)
        d["replaced"] = _replaced(r)
        writer.writerow(["" if d[c] is None else d[c] for c in COLUMNS])
    return out.getvalue()


def to_json(report: Report) -> dict[str, Any]:
    indicators = []
    for cur in report.current:
        ind = cur.latest.indicator
        indicators.append(
            {
                "member": cur.sender,
                "period_start": ind.period_start.isoformat(),
                "period_end": ind.period_end.isoformat(),
                "revision": ind.revision,
                "message_id": str(cur.latest.message_id),
                "replaced": [
                    {"message_id": str(p.message_id), "revision": p.indicator.revision}
                    for p in cur.replaced
                ],
                "measures": [m.model_dump(mode="json") for m in ind.measures],
            }
        )
    return {
        "generated_at": report.generated_at.isoformat(),
        "since": report.since.isoformat() if report.since else None,
        "until": report.until.isoformat() if report.until else None,
        "indicators": indicators,
        "set_aside": [asdict(a) for a in report.set_aside],
    }


def series(
    report: Report, measure: IndicatorMeasure
) -> dict[str, dict[str, list[tuple[date, float]]]]:
    """panel (category) -> member -> [(period start, count or NaN when suppressed)]."""
    panels: dict[str, dict[str, list[tuple[date, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in report.rows:
        if r.measure != measure.value or r.reason is not None:
            continue
        value = float("nan") if r.count is None else float(r.count)
        panels[r.category or NO_CATEGORY][r.member].append((r.period_start, value))
    for members in panels.values():
        for points in members.values():
            points.sort()
    return panels


def figure(report: Report, measure: IndicatorMeasure = IndicatorMeasure.ALERTS_SENT) -> Figure:
    """One panel per category, one line per member over time, for ``measure``."""
    data = series(report, measure)
    names = [c.value for c in OffenceCategory] + ([NO_CATEGORY] if NO_CATEGORY in data else [])
    cols = 3
    rows = -(-len(names) // cols)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(cols * 4.2, rows * 2.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    members = sorted({m for panel in data.values() for m in panel})
    for i, ax in enumerate(axes.flat):
        if i >= len(names):
            ax.set_visible(False)
            continue
        name = names[i]
        ax.set_title(name.replace("_", " ").lower(), fontsize=9)
        ax.tick_params(labelsize=7)
        for colour, member in enumerate(members):
            points = data.get(name, {}).get(member, [])
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(list(xs), list(ys), marker="o", label=member, color=f"C{colour % 10}")
        ax.set_ylim(bottom=0)
    if members:
        fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="outside upper right", fontsize=8)
    fig.suptitle(f"{measure.value.replace('_', ' ').lower()} per member (gaps: suppressed)")
    return fig


def png_bytes(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def to_html(report: Report, measures: Sequence[IndicatorMeasure]) -> str:
    """A standalone page: the charts of ``measures`` (embedded PNG) and the table."""
    charts = "\n".join(
        f'<h2>{html.escape(m.value)}</h2><img alt="{html.escape(m.value)}" '
        f'src="data:image/png;base64,{base64.b64encode(png_bytes(figure(report, m))).decode()}">'
        for m in measures
    )
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = []
    for r in report.rows:
        d = asdict(r)
        d["replaced"] = _replaced(r)
        cls = ' class="corrected"' if r.replaced else ""
        cells = "".join(
            f"<td>{html.escape('' if d[c] is None else str(d[c]))}</td>" for c in COLUMNS
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    aside = "".join(
        f"<li>{html.escape(a.member)} {html.escape(a.message_id)}: {html.escape(a.reason)}</li>"
        for a in report.set_aside
    )
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>Statistical indicators</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px}tr.corrected{background:#fff4d6}"
        "img{max-width:100%}</style></head><body>"
        "<h1>Statistical indicators</h1>"
        f"<p>Generated {html.escape(report.generated_at.isoformat())}"
        ". Counts shown as &lt;N are under the sender's threshold; rows marked replaced are"
        " corrections (the latest revision wins).</p>"
        f"{charts}<h2>Table</h2><table><tr>{head}</tr>{''.join(body)}</table>"
        + (f"<h2>Set aside</h2><ul>{aside}</ul>" if aside else "")
        + "</body></html>\n"
    )


def write(report: Report, path: Path, measures: Sequence[IndicatorMeasure]) -> None:
    """Write ``path`` in the format its suffix names (InputError naming ``--out`` otherwise)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            path.write_text(to_csv(report), encoding="utf-8")
        elif suffix == ".json":
            text = json.dumps(to_json(report), indent=2, sort_keys=True) + "\n"
            path.write_text(text, encoding="utf-8")
        elif suffix == ".png":
            path.write_bytes(png_bytes(figure(report, measures[0])))
        elif suffix == ".html":
            path.write_text(to_html(report, measures), encoding="utf-8")
        else:
            raise InputError([("--out", f"{path.name}: the suffix must be one of {SUFFIXES}")])
    except OSError as exc:
        raise InputError([("--out", f"{path}: {exc.strerror or exc}")]) from None
