"""A drill report as one self-contained HTML page (inline CSS, no scripts, no external files),
for an ops engineer to attach to a ticket."""
from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from dcctl.report.svg import seconds_label, svg, text, ticks
from dcctl.units import human_bytes

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#1d2430}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.verdict{display:inline-block;padding:.2em .8em;border-radius:4px;font-weight:600;color:#fff}
.passed{background:#1a7f37} .failed{background:#cf222e} .other{background:#9a6700}
table{border-collapse:collapse;width:100%} td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left}
th{background:#f6f8fa} td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600} .ko{color:#cf222e;font-weight:600} .muted{color:#57606a}
.loss{border-left:4px solid #1a7f37;padding:.3em .8em;background:#f6f8fa}
svg text{font:12px system-ui,sans-serif;fill:#1d2430} svg .axis{fill:#57606a}
"""
GANTT_WIDTH, GANTT_LABELS, GANTT_ROW, GANTT_MIN_BAR = 760, 170, 24, 4  # px; a bar is never thinner than 4 px


def _e(value: Any) -> str:
    return html.escape("-" if value is None else str(value))


def _seconds(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f} s" if isinstance(value, (int, float)) and not isinstance(value, bool) else _e(value)


def _size(value: Any) -> str:
    """61.4 MiB (64,425,242 bytes): readable, with the exact figure beside it."""
    if not isinstance(value, int) or isinstance(value, bool):
        return _e(value)
    return f"{human_bytes(value)} ({value:,} bytes)" if value >= 1024 else f"{value} bytes"


def gantt(steps: list[dict[str, Any]], wall_seconds: float | None) -> str:
    """The timeline as a Gantt chart: one bar per step at its start offset, as long as it took
    (at least GANTT_MIN_BAR px, so an instant step still shows), failed steps in red."""
    placed = [s for s in steps if isinstance(s.get("start_offset_s"), (int, float))]
    if not placed:
        return "<p class=muted>no step was timed</p>"
    ends = [s["start_offset_s"] + (s.get("seconds") or 0) for s in placed]
    scale_top = ticks(max([*ends, wall_seconds or 0]) or 1)
    total = scale_top[-1]
    plot = GANTT_WIDTH - GANTT_LABELS - 60
    height = GANTT_ROW * len(placed) + 40

    def x(seconds: float) -> float:
        return GANTT_LABELS + plot * seconds / total

    body = []
    for tick in scale_top:
        body.append(f'<line x1="{x(tick):.1f}" y1="4" x2="{x(tick):.1f}" y2="{height - 26}" stroke="#e4e7eb"/>')
        body.append(text(x(tick), height - 10, seconds_label(tick), "middle", "axis"))
    for row, step in enumerate(placed):
        top = 8 + row * GANTT_ROW
        took = step.get("seconds") or 0
        width = max(plot * took / total, GANTT_MIN_BAR)
        color = "#54aeff" if step.get("outcome") == "ok" else "#cf222e"
        body.append(text(GANTT_LABELS - 8, top + 14, step["step"], "end"))
        body.append(f'<rect x="{x(step["start_offset_s"]):.1f}" y="{top + 3}" width="{width:.1f}" '
                    f'height="{GANTT_ROW - 8}" rx="2" fill="{color}"><title>{_e(step["step"])}: '
                    f'{_seconds(step.get("seconds"))} from {_seconds(step["start_offset_s"])}</title></rect>')
        body.append(text(x(step["start_offset_s"]) + width + 4, top + 14, _seconds(step.get("seconds")), "start",
                         "axis"))
    return svg(GANTT_WIDTH, height, "drill timeline: steps at their start, as long as they took", body)


def _checks(observed: dict[str, Any]) -> list[dict[str, Any]]:
    checks = observed.get("checks")
    return [c for c in checks if isinstance(c, dict)] if isinstance(checks, list) else []


def render_html(report: Mapping[str, Any]) -> str:
    observed = report.get("observed", {})
    passed = report["outcome"] == "success"
    verdict_class = "passed" if passed else "failed" if report["outcome"] in ("failed", "halted") else "other"
    verdict = "PASSED" if passed else report["outcome"].upper()
    figures = [
        ("Time to ready (RTO: start + promote)", _seconds(observed.get("rto_seconds"))),
        ("Data freshness (RPO, seconds behind the primary)", _seconds(observed.get("rpo_seconds"))),
        ("WAL behind the primary at the start", _size(observed.get("rpo_bytes"))),
        ("Newest replayed commit", _e(observed.get("newest_replayed_commit_at"))),
        ("Copy", f"{_seconds(observed.get('copy_seconds'))}, {_size(observed.get('copy_bytes'))}"),
        ("Start / promote", f"{_seconds(observed.get('start_seconds'))} / {_seconds(observed.get('promote_seconds'))}"),
        ("Clean-up", _seconds(observed.get("cleanup_seconds"))),
        ("Whole drill", _seconds(report.get("wall_seconds"))),
    ]
    steps = "".join(
        f"<tr><td>{_e(s['step'])}</td><td class=num>{_seconds(s.get('start_offset_s'))}</td>"
        f"<td class=num>{_seconds(s.get('seconds'))}</td>"
        f"<td class={'ok' if s['outcome'] == 'ok' else 'ko'}>{_e(s['outcome'])}"
        f"{' — ' + _e(s.get('error')) if s.get('error') else ''}</td></tr>"
        for s in report["steps"])
    checks = "".join(
        f"<tr><td class={'ok' if c.get('passed') else 'ko'}>{'PASS' if c.get('passed') else 'FAIL'}</td>"
        f"<td>{_e(c.get('name'))}</td><td>{_e(c.get('kind'))}</td><td>{_e(c.get('detail'))}</td></tr>"
        for c in _checks(observed)) or "<tr><td colspan=4 class=muted>no check ran</td></tr>"
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in figures)
    reason = observed.get("finish_reason") or observed.get("halt_reason")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dcctl drill {_e(report['operation'])}</title>
<style>{CSS}</style></head><body>
<h1>Drill of {_e(report['service'])} at site {_e(report.get('new_primary'))}</h1>
<p><span class="verdict {verdict_class}">{verdict}</span>
<span class=muted>{_e(report.get('args', {}).get('mode', 'non-disruptive'))} drill
{_e(report['operation'])}, {_e(report['started_at'])} to {_e(report['ended_at'])}, host {_e(report.get('host'))}</span></p>
{f'<p class=ko>{_e(reason)}</p>' if reason and not passed else ''}
<p class=loss><strong>Data loss:</strong> {_e(report['data_loss'])}</p>
<h2>Figures</h2><table>{rows}</table>
<h2>Checks</h2><table><tr><th>result</th><th>check</th><th>kind</th><th>detail</th></tr>{checks}</table>
<h2>Timeline</h2>{gantt(report['steps'], report.get('wall_seconds'))}
<table><tr><th>step</th><th>start</th><th>took</th><th>outcome</th></tr>{steps}</table>
<p class=muted>Generated by dcctl. The JSON record beside this page holds every figure.</p>
</body></html>
"""
