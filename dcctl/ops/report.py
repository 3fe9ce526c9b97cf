"""The record every operation leaves: JSON for scripts, Markdown for people, built from the
journal alone (so a resumed or crashed operation reports the same way)."""
from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Mapping
from typing import Any, TypedDict

from dcctl.ops.journal import Journal


class StepRecord(TypedDict, total=False):
    """One step of the journal, as the report shows it."""

    step: str
    start_offset_s: float | None
    outcome: str  # ok | failed
    seconds: float | None
    error: str | None


class OperationReport(TypedDict):
    """What every operation leaves behind (report.json), whatever its kind. `observed` holds what
    the steps saw, by name (LSNs, timelines, commands' outputs); docs/operations.md lists them."""

    operation: str
    kind: str
    service: str
    old_primary: str | None
    new_primary: str | None
    started_at: str
    ended_at: str
    wall_seconds: float
    outcome: str  # success | rolled_back | failed | halted | superseded | refused | unfinished
    host: str | None
    pid: int | None
    args: dict[str, Any]
    write_unavailability_seconds: float | None
    data_loss: str
    steps: list[StepRecord]
    observed: dict[str, Any]


def build_report(entries: list[dict[str, Any]]) -> OperationReport:
    header = entries[0]
    start = header["ts"]
    steps: list[StepRecord] = []
    observed: dict[str, Any] = {}
    outcome, end = "unfinished", entries[-1]["ts"]
    open_steps: dict[str, StepRecord] = {}
    for entry in entries[1:]:
        event = entry["event"]
        if event == "step_start":
            open_steps[entry["step"]] = {"step": entry["step"], "start_offset_s": round(entry["ts"] - start, 4)}
        elif event in ("step_end", "step_fail"):
            step = open_steps.pop(entry["step"], {"step": entry["step"], "start_offset_s": None})
            step["outcome"] = "ok" if event == "step_end" else "failed"
            step["seconds"] = entry.get("seconds")
            if event == "step_fail":
                step["error"] = entry.get("error")
            observed.update(entry.get("observed") or {})
            steps.append(step)
        elif event == "finish":
            outcome = entry["outcome"]
            if entry.get("reason") or entry.get("error"):
                observed["finish_reason"] = entry.get("reason") or entry.get("error")
        elif event == "halt":
            outcome = "halted"
            observed["halt_reason"] = entry.get("reason")
    if header["kind"] == "drill" and outcome == "rolled_back":
        outcome = "failed"  # a drill has no roles to roll back: it failed, and its copy was removed
    window = None
    if _number(observed.get("writable_at")):
        began = observed.get("writes_stopped_at", start if header["kind"] == "failover" else None)
        if began is not None and _number(began):
            window = round(observed["writable_at"] - began, 4)
    return {
        "operation": header["op"], "kind": header["kind"], "service": header["service"],
        "old_primary": header.get("old_primary"), "new_primary": header.get("new_primary"),
        "started_at": _iso(start), "ended_at": _iso(end), "wall_seconds": round(end - start, 4),
        "outcome": outcome, "host": header.get("host"), "pid": header.get("pid"), "args": header.get("args", {}),
        "write_unavailability_seconds": window,
        "data_loss": data_loss_verdict(header["kind"], outcome, observed, header.get("old_primary"),
                                       header.get("new_primary")),
        "steps": steps, "observed": observed,
    }


def data_loss_verdict(kind: str, outcome: str, observed: dict[str, Any], old: str | None = None,
                      new: str | None = None) -> str:
    if kind == "drill":
        return "none: a drill works on a throwaway copy; production is untouched"
    if outcome in ("rolled_back", "refused", "failed"):
        return "none: the roles did not change"
    if kind == "switchover":
        if "standby_replayed_lsn" in observed:
            return (f"none: the standby replayed past the old primary's shutdown checkpoint "
                    f"{observed.get('shutdown_checkpoint_lsn')} (to {observed['standby_replayed_lsn']}) before it was "
                    f"promoted")
        return "none so far: promotion has not happened"
    if kind == "failover":
        return (f"possible: commits on {old} after the last WAL {new} received "
                f"({observed.get('last_received_lsn')}; replayed up to "
                f"{observed.get('last_replayed_lsn')}, last replayed commit at "
                f"{observed.get('last_replayed_commit_at')}) did not reach it; `dcctl rejoin` counts them exactly "
                f"before it discards them")
    if kind == "rejoin":
        return observed.get("divergence") or "not assessed"
    return "unknown"


def write_report(journal: Journal, report: OperationReport | None = None) -> tuple[Path, Path]:
    """The journal's report as JSON and Markdown (and HTML for a drill); `report`: already built from it."""
    report = report or build_report(journal.entries())
    json_path = journal.directory / "report.json"
    md_path = journal.directory / "report.md"
    write_private(json_path, json.dumps(report, indent=2, default=str) + "\n")
    write_private(md_path, markdown(report))
    if report["kind"] == "drill":
        from dcctl.drill.html import render_html

        html_path = journal.directory / "report.html"
        write_private(html_path, render_html(report))
        return json_path, html_path
    return json_path, md_path


def write_private(path: Path, text: str) -> None:
    """Write a report readable by its owner only, like the journal it is made from (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a report written before by an older dcctl may still be 0644
        with os.fdopen(fd, "w", encoding="utf-8", closefd=False) as handle:
            handle.write(text)
    finally:
        os.close(fd)


def markdown(r: Mapping[str, Any]) -> str:
    lines = [
        f"# {r['kind']} of {r['service']}: {r['outcome']}",
        "",
        f"- Operation: `{r['operation']}` (host {r['host']}, pid {r['pid']})",
        f"- Roles: {r['old_primary']} -> {r['new_primary']}",
        f"- Started {r['started_at']}, ended {r['ended_at']} ({r['wall_seconds']:.3f} s)",
    ]
    if r["write_unavailability_seconds"] is not None:
        lines.append(f"- Write unavailability (server side): {r['write_unavailability_seconds']:.3f} s")
    lines += [f"- Data loss: {r['data_loss']}", "", "## Steps", "", "| step | start (s) | took (s) | outcome |",
              "|---|---:|---:|---|"]
    for step in r["steps"]:
        took = "-" if step.get("seconds") is None else f"{step['seconds']:.3f}"
        offset = "-" if step.get("start_offset_s") is None else f"{step['start_offset_s']:.3f}"
        outcome = step["outcome"] + (f": {step['error']}" if step.get("error") else "")
        lines.append(f"| {step['step']} | {offset} | {took} | {outcome} |")
    lines += ["", "## Observed", ""]
    for key, value in r["observed"].items():
        if _number(value) and isinstance(value, float) and 1e9 < value < 253402300799:
            value = _iso(value)
        lines.append(f"- {key}: {json.dumps(value, default=str) if isinstance(value, (list, dict)) else value}")
    return "\n".join(lines) + "\n"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")
