"""The site report (pure: the site journal and its services' reports in, the record out): per
service its outcome, where its primary is now, write window, RTO, data-loss and file-store
verdicts; per group its duration; the site-level RTO, from the plan's start to the moment the
last service accepted writes again."""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from dcctl.report.history import describe_site, rto

MOVES = ("switchover", "failover")


def build_site_report(entries: list[dict[str, Any]], child_reports: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    header = entries[0]
    start, end = header["ts"], entries[-1]["ts"]
    kind = str(header["kind"]).removeprefix("site-")
    groups = [{"group": i + 1, "services": list(g.get("services", [])), "on_failure": g.get("on_failure", "stop"),
               "outcome": "not started", "seconds": None} for i, g in enumerate(header.get("groups") or [])]
    services: dict[str, dict[str, Any]] = {}
    outcome, reason = "unfinished", None
    for entry in entries[1:]:
        event = entry["event"]
        if event == "group_start" and entry["group"] < len(groups):
            groups[entry["group"]].update(outcome="running", started_offset_s=round(entry["ts"] - start, 4))
        elif event == "group_end" and entry["group"] < len(groups):
            groups[entry["group"]].update(outcome=entry.get("outcome"), seconds=entry.get("seconds"))
        elif event == "service_skipped":
            services[entry["service"]] = {"group": entry["group"] + 1, "operation": None, "outcome": "skipped",
                                          "error": entry.get("reason")}
        elif event == "service_start":
            services[entry["service"]] = {"group": entry["group"] + 1, "operation": entry["operation"],
                                          "outcome": "unfinished", "error": None}
        elif event == "service_end":
            services[entry["service"]] = {"group": entry["group"] + 1, "operation": entry.get("operation"),
                                          "outcome": entry.get("outcome"), "error": entry.get("error")}
        elif event == "halt":
            outcome, reason = "halted", entry.get("reason")
        elif event == "resume":
            outcome = "unfinished"
        elif event == "finish":
            outcome, reason = entry["outcome"], entry.get("reason")
    rows = [service_row(name, part, child_reports.get(part["operation"] or ""), kind, header.get("new_primary"))
            for name, part in services.items()]
    writable = [row["writable_at"] for row in rows if _number(row.get("writable_at"))]
    site_rto = round(max(writable) - start, 4) if writable and kind in MOVES else None
    windows = [row["write_unavailability_seconds"] for row in rows if _number(row["write_unavailability_seconds"])]
    return {
        "operation": header["op"], "kind": header["kind"], "service": header.get("service"),
        "old_primary": header.get("old_primary"), "new_primary": header.get("new_primary"),
        "started_at": _iso(start), "ended_at": _iso(end), "wall_seconds": round(end - start, 4),
        "outcome": outcome, "reason": reason, "host": header.get("host"), "pid": header.get("pid"),
        "args": header.get("args") or {}, "site_rto_seconds": site_rto,
        "write_unavailability_seconds": max(windows) if windows else None,
        "data_loss": site_data_loss(rows), "groups": groups, "services": rows, "steps": [],
        "observed": {"site_rto_seconds": site_rto},
    }


def service_row(name: str, part: Mapping[str, Any], report: Mapping[str, Any] | None, kind: str,
                target: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {"service": name, "group": part["group"], "operation": part["operation"],
                           "outcome": part["outcome"], "error": part["error"], "write_unavailability_seconds": None,
                           "rto_seconds": None, "data_loss": None, "file_store": None, "writable_at": None}
    if report is not None:
        observed = report.get("observed") or {}
        row.update(outcome=report["outcome"] if part["outcome"] == "unfinished" else part["outcome"],
                   write_unavailability_seconds=report.get("write_unavailability_seconds"), rto_seconds=rto(report),
                   data_loss=report.get("data_loss"), file_store=file_store_verdict(observed),
                   writable_at=observed.get("writable_at"))
    row["primary_now"] = primary_now(row["outcome"], report, kind, target)
    return row


def primary_now(outcome: str, report: Mapping[str, Any] | None, kind: str, target: str | None) -> str:
    """Where the service's primary is after its part, as the record shows it."""
    if outcome == "skipped":
        return (target or "unchanged") if kind in MOVES else "unchanged"
    if report is None:
        return "unchanged (its operation never started)"
    old, new = report.get("old_primary"), report.get("new_primary")
    promoted = _number((report.get("observed") or {}).get("writable_at"))
    if kind == "drill" or kind == "rejoin":
        return f"{new if kind == 'rejoin' else old}"
    if outcome == "success":
        return str(new)
    if outcome in ("rolled_back", "refused", "failed", "superseded") and not promoted:
        return f"{old} (unchanged)"
    if promoted:
        return f"{new} (its operation stopped after the promotion: `dcctl resume {report['operation']}`)"
    return f"unknown: its operation stopped before it could tell (`dcctl status -s {report['service']}`)"


def file_store_verdict(observed: Mapping[str, Any]) -> str | None:
    """
    >>> file_store_verdict({"final_file_sync": {"documents": {"verified": "identical"}}})
    'documents: identical'
    >>> file_store_verdict({"final_file_sync": "no file stores"})
    'no file stores'
    """
    synced = observed.get("final_file_sync")
    if isinstance(synced, dict):
        return "; ".join(f"{store}: {(result or {}).get('verified', 'not verified')}"
                         for store, result in synced.items())
    if isinstance(synced, str):
        return synced
    for key in ("file_sync_verdict", "quarantine_verdict"):
        if isinstance(observed.get(key), str):
            return str(observed[key])
    if isinstance(observed.get("file_sync"), str):
        return str(observed["file_sync"])
    return None


def site_data_loss(rows: list[dict[str, Any]]) -> str:
    verdicts = [(row["service"], row["data_loss"]) for row in rows if row["data_loss"]]
    if not verdicts:
        return "none: no service changed roles"
    if all(str(verdict).startswith("none") for _, verdict in verdicts):
        return "none on every service"
    return "; ".join(f"{name}: {verdict}" for name, verdict in verdicts if not str(verdict).startswith("none"))


def markdown(r: Mapping[str, Any]) -> str:
    lines = [f"# {describe_site(r)}: {r['outcome']}", "",
             f"- Operation: `{r['operation']}` (host {r['host']}, pid {r['pid']})",
             f"- Started {r['started_at']}, ended {r['ended_at']} ({r['wall_seconds']:.3f} s)"]
    if r.get("reason"):
        lines.append(f"- Stopped because: {r['reason']}")
    if r.get("site_rto_seconds") is not None:
        lines.append(f"- Site-level RTO (plan start -> last service writable): {r['site_rto_seconds']:.3f} s")
    lines += [f"- Data loss: {r['data_loss']}", "", "## Services", "",
              "| service | group | outcome | primary now | write window | RTO | data loss | file stores | operation |",
              "|---|---:|---|---|---:|---:|---|---|---|"]
    for s in r["services"]:
        outcome = s["outcome"] + (f": {s['error']}" if s.get("error") else "")
        lines.append(f"| {s['service']} | {s['group']} | {_cell(outcome)} | {_cell(s['primary_now'])} | "
                     f"{_seconds(s['write_unavailability_seconds'])} | {_seconds(s['rto_seconds'])} | "
                     f"{_cell(s['data_loss'])} | {_cell(s['file_store'])} | {_cell(s['operation'])} |")
    lines += ["", "## Groups", "", "| group | services | on failure | outcome | took |", "|---:|---|---|---|---:|"]
    for g in r["groups"]:
        lines.append(f"| {g['group']} | {', '.join(g['services'])} | {g['on_failure']} | {g['outcome']} | "
                     f"{_seconds(g['seconds'])} |")
    lines += ["", "Each service's own report is in its operation's directory, next to this one."]
    return "\n".join(lines) + "\n"


def html_page(r: Mapping[str, Any]) -> str:
    """The same record as one self-contained page (inline CSS, no script), like the history page."""
    from html import escape

    from dcctl.report.service_page import CSS, verdict

    def e(value: Any) -> str:
        return escape("-" if value is None else str(value))

    services = "".join(
        f"<tr{'' if s['outcome'] in ('success', 'skipped') else ' class=fail'}><td>{e(s['service'])}</td>"
        f"<td class=num>{s['group']}</td><td>{verdict(s['outcome'])}"
        f"{'<br>' + e(s['error']) if s.get('error') else ''}</td><td>{e(s['primary_now'])}</td>"
        f"<td class=num>{_seconds(s['write_unavailability_seconds'])}</td><td class=num>{_seconds(s['rto_seconds'])}"
        f"</td><td>{e(s['data_loss'])}</td><td>{e(s['file_store'])}</td><td><code>{e(s['operation'])}</code></td></tr>"
        for s in r["services"])
    groups = "".join(f"<tr><td class=num>{g['group']}</td><td>{e(', '.join(g['services']))}</td>"
                     f"<td>{e(g['on_failure'])}</td><td>{verdict(str(g['outcome']))}</td>"
                     f"<td class=num>{_seconds(g['seconds'])}</td></tr>" for g in r["groups"])
    rto = _seconds(r.get("site_rto_seconds"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dcctl: {e(r['operation'])}</title>
<style>{CSS}</style></head><body>
<h1>{e(describe_site(r))}</h1>
<p>{verdict(r['outcome'])} {e(r.get('reason') or '')}</p>
<div class=tiles><div class=tile><b>{rto}</b>site-level RTO (plan start to last service writable)</div>
<div class=tile><b>{r['wall_seconds']:.3f} s</b>from start to end</div></div>
<p class=muted>Operation <code>{e(r['operation'])}</code>, started {e(r['started_at'])}, ended {e(r['ended_at'])}
(host {e(r['host'])}, pid {e(r['pid'])}). Data loss: {e(r['data_loss'])}.</p>
<h2>Services</h2>
<table><tr><th>service</th><th>group</th><th>outcome</th><th>primary now</th><th>write window</th><th>RTO</th>
<th>data loss</th><th>file stores</th><th>operation</th></tr>
{services}</table>
<h2>Groups</h2>
<table><tr><th>group</th><th>services</th><th>on failure</th><th>outcome</th><th>took</th></tr>
{groups}</table>
<p class=muted>Each service's own report is in its operation's directory, next to this one.</p>
</body></html>
"""


def to_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, default=str) + "\n"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def _seconds(value: Any) -> str:
    return f"{value:.3f} s" if _number(value) else "-"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")
