"""`dcctl report`: one self-contained HTML page of a service's history, for an auditor or an IT
director (pure: reports in, HTML out). Every switchover, failover, rejoin and drill with its
outcome, write window, RTO, RPO and data-loss verdict; a chart of RTO, RPO and write windows over
time; failures first. Inline CSS and SVG: no script, no external file, no request.
"""
from __future__ import annotations

import html
from datetime import datetime, timezone
from collections.abc import Mapping, Sequence
from typing import Any

from dcctl.report.history import SUCCESS, describe, failures_first, kind_label, report_file, rpo, rto, \
    seconds_text, write_window
from dcctl.report.svg import seconds_label, svg, text, ticks

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#1d2430;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.1em} h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
.muted{color:#57606a} .tiles{display:flex;flex-wrap:wrap;gap:.8em;margin:1.2em 0}
.tile{border:1px solid #d0d7de;border-radius:6px;padding:.6em 1em;min-width:9em;background:#f6f8fa}
.tile b{display:block;font-size:1.5em} .tile.bad{border-color:#cf222e;background:#ffebe9}
table{border-collapse:collapse;width:100%} td,th{border:1px solid #ddd;padding:.3em .5em;text-align:left;
vertical-align:top} th{background:#f6f8fa} td.num{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap} tr.fail td{background:#fff5f5}
.verdict{display:inline-block;padding:0 .5em;border-radius:4px;font-weight:600;color:#fff;white-space:nowrap}
.ok{background:#1a7f37} .ko{background:#cf222e} .other{background:#9a6700}
code{font-size:.85em;word-break:break-all}
svg text{font:12px system-ui,sans-serif;fill:#1d2430} svg .axis{fill:#57606a}
"""
CHART_WIDTH, CHART_HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 900, 300, 70, 50, 40, 40
COLORS = {"rto": "#0969da", "rpo": "#bc4c00", "window": "#8c959f"}


def _e(value: Any) -> str:
    return html.escape("-" if value is None else str(value))


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _date(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")


def verdict(outcome: str) -> str:
    klass = "ok" if outcome == SUCCESS else "ko" if outcome in ("failed", "halted", "superseded") else "other"
    return f'<span class="verdict {klass}">{_e(outcome)}</span>'


def chart(reports: Sequence[Mapping[str, Any]], start: float, end: float) -> str:
    """RTO (dots), RPO (diamonds) and write windows (grey bars) of each operation at its date;
    an operation that failed has a red ring."""
    points = [(r, _epoch(r["started_at"])) for r in reports]
    values = [v for r, _ in points for v in (rto(r), rpo(r), write_window(r)) if v is not None]
    scale = ticks(max(values, default=0) or 1, 4)
    top = scale[-1]
    plot_w, plot_h = CHART_WIDTH - LEFT - RIGHT, CHART_HEIGHT - TOP - BOTTOM
    span = max(end - start, 1)

    def x(ts: float) -> float:
        return LEFT + plot_w * min(max(ts - start, 0), span) / span

    def y(seconds: float) -> float:
        return TOP + plot_h * (1 - seconds / top)

    body = []
    for tick in scale:
        body.append(f'<line x1="{LEFT}" y1="{y(tick):.1f}" x2="{CHART_WIDTH - RIGHT}" y2="{y(tick):.1f}" '
                    f'stroke="#e4e7eb"/>')
        body.append(text(LEFT - 6, y(tick) + 4, seconds_label(tick), "end", "axis"))
    for index in range(5):
        ts = start + span * index / 4
        body.append(text(x(ts), CHART_HEIGHT - BOTTOM + 18, _date(ts), "middle", "axis"))
    body.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{CHART_WIDTH - RIGHT}" y2="{TOP + plot_h}" '
                f'stroke="#57606a"/>')
    for report, ts in points:
        body.extend(_marks(report, x(ts), y))
    legend = [("rto", "RTO (time to ready)"), ("rpo", "RPO (data freshness)"), ("window", "write window")]
    for index, (key, label) in enumerate(legend):
        left = LEFT + index * 190
        body.append(f'<rect x="{left}" y="12" width="12" height="12" fill="{COLORS[key]}"/>')
        body.append(text(left + 18, 22, label))
    body.append(text(LEFT + 3 * 190, 22, "red ring: failed", css="axis"))
    if not points:
        body.append(text(LEFT + plot_w / 2, TOP + plot_h / 2, "no operation in this period", "middle", "axis"))
    return svg(CHART_WIDTH, CHART_HEIGHT, "RTO, RPO and write windows over time", body)


def _marks(report: Mapping[str, Any], cx: float, y) -> list[str]:
    marks = []
    title = f"<title>{_e(report['operation'])}: {_e(kind_label(report))}, {_e(report['outcome'])}</title>"
    window = write_window(report)
    if window is not None:
        marks.append(f'<rect x="{cx - 4:.1f}" y="{y(window):.1f}" width="8" height="{max(y(0) - y(window), 2):.1f}" '
                     f'fill="{COLORS["window"]}" opacity="0.8">{title}</rect>')
    value = rto(report)
    if value is not None:
        marks.append(f'<circle cx="{cx:.1f}" cy="{y(value):.1f}" r="5" fill="{COLORS["rto"]}">{title}</circle>')
    value = rpo(report)
    if value is not None:
        cy = y(value)
        marks.append(f'<path d="M{cx:.1f} {cy - 6:.1f} L{cx + 6:.1f} {cy:.1f} L{cx:.1f} {cy + 6:.1f} '
                     f'L{cx - 6:.1f} {cy:.1f} Z" fill="{COLORS["rpo"]}">{title}</path>')
    if report["outcome"] != SUCCESS:
        marks.append(f'<circle cx="{cx:.1f}" cy="{y(0) - 10:.1f}" r="8" fill="none" stroke="#cf222e" '
                     f'stroke-width="2.5">{title}</circle>')
    return marks


def tiles(reports: Sequence[Mapping[str, Any]]) -> str:
    failed = [r for r in reports if r["outcome"] != SUCCESS]
    drills = [r for r in reports if r["kind"] == "drill" and r["outcome"] == SUCCESS]
    rtos = [v for r in reports if (v := rto(r)) is not None]
    windows = [v for r in reports if (v := write_window(r)) is not None]
    items = [
        ("operations", str(len(reports)), False),
        ("did not succeed", str(len(failed)), bool(failed)),
        ("successful drills", str(len(drills)), not drills),
        ("last successful drill", max((r["started_at"][:10] for r in drills), default="never"), not drills),
        ("longest RTO", seconds_text(max(rtos, default=None), 2), False),
        ("longest write window", seconds_text(max(windows, default=None), 2), False),
    ]
    return "<div class=tiles>" + "".join(
        f"<div class='tile{' bad' if bad else ''}'><b>{_e(value)}</b>{_e(label)}</div>" for label, value, bad in items
    ) + "</div>"


def rows(reports: Sequence[Mapping[str, Any]], operations_dir: str) -> str:
    cells = []
    for r in failures_first(reports):
        klass = "" if r["outcome"] == SUCCESS else " class=fail"
        reason = (r.get("observed") or {}).get("finish_reason") or (r.get("observed") or {}).get("halt_reason")
        cells.append(
            f"<tr{klass}><td class=num>{_e(r['started_at'][:19].replace('T', ' '))}</td><td>{_e(kind_label(r))}</td>"
            f"<td>{verdict(r['outcome'])}{'<br>' + _e(reason) if reason and r['outcome'] != SUCCESS else ''}</td>"
            f"<td>{_e(describe(r))}</td><td class=num>{seconds_text(write_window(r))}</td>"
            f"<td class=num>{seconds_text(rto(r))}</td><td class=num>{seconds_text(rpo(r))}</td>"
            f"<td>{_e(r['data_loss'])}</td>"
            f"<td><code>{_e(r['operation'])}/{report_file(r)}</code></td></tr>")
    if not cells:
        return "<tr><td colspan=9 class=muted>no operation recorded in this period</td></tr>"
    return "".join(cells)


def render_page(service: str, reports: Sequence[Mapping[str, Any]], since: float, now: float,
                operations_dir: str) -> str:
    """The whole page. `reports`: build_report() of each operation of `service` since `since`."""
    failed = sum(1 for r in reports if r["outcome"] != SUCCESS)
    lead = (f"{failed} operation(s) did not succeed: they are listed first." if failed
            else "Every operation in this period succeeded.")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dcctl: history of {_e(service)}</title>
<style>{CSS}</style></head><body>
<h1>Service {_e(service)}: switchovers, failovers, rejoins and drills</h1>
<p class=muted>From {_date(since)} to {_date(now)} (UTC); generated by dcctl on
{_e(datetime.fromtimestamp(now, timezone.utc).isoformat(timespec='seconds'))}.</p>
{tiles(reports)}
<p>{_e(lead)}</p>
<h2>RTO, RPO and write windows</h2>
{chart(reports, since, now)}
<p class=muted>RTO: time until the promoted side accepts writes (a drill's copy: start + promote). RPO: how far
behind the primary the promoted data was (0 for a switchover whose standby replayed past the old primary's
last record). Write window: seconds the service accepted no write.</p>
<h2>Operations (failures first, then newest first)</h2>
<table><tr><th>started (UTC)</th><th>kind</th><th>outcome</th><th>what</th><th>write window</th><th>RTO</th>
<th>RPO</th><th>data loss</th><th>report</th></tr>
{rows(reports, operations_dir)}</table>
<p class=muted>Each operation's journal and full report are in its directory under <code>{_e(operations_dir)}</code>
(the report column names them).</p>
</body></html>
"""
