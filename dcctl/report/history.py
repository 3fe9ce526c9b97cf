"""What an operation was, said the way people read it, and the figures of every history view
(pure: built from the reports of ops/report.build_report).

A non-disruptive drill changes no role: it is shown as a drill at its site, never as `a -> b`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

HISTORY_COLUMNS = ["operation", "kind", "outcome", "started", "took", "write window", "what"]
SUCCESS = "success"


def mode(report: Mapping[str, Any]) -> str | None:
    """A drill's mode (non-disruptive, full); None for the other kinds."""
    if report["kind"] != "drill":
        return None
    return (report.get("args") or {}).get("mode") or "non-disruptive"


def kind_label(report: Mapping[str, Any]) -> str:
    """
    >>> kind_label({"kind": "drill", "args": {"mode": "full"}}), kind_label({"kind": "failover", "args": {}})
    ('drill (full)', 'failover')
    """
    return f"drill ({mode(report)})" if report["kind"] == "drill" else report["kind"]


def describe(report: Mapping[str, Any]) -> str:
    """What the operation did to the roles, in words.

    >>> describe({"kind": "drill", "args": {"mode": "non-disruptive"}, "old_primary": "rabat",
    ...           "new_primary": "backup"})
    'drill at backup: a copy promoted, no role changed'
    >>> describe({"kind": "rejoin", "args": {}, "old_primary": "rabat", "new_primary": "backup"})
    'rabat rejoined as a standby of backup'
    """
    old, new = report.get("old_primary"), report.get("new_primary")
    args = report.get("args") or {}
    if str(report["kind"]).startswith("site-"):
        return describe_site(report)
    if report["kind"] == "drill":
        if mode(report) == "full":
            return f"drill: switchover {old} -> {new}, verified, and back to {old}"
        return f"drill at {new}: a copy promoted, no role changed"
    if report["kind"] == "rejoin":
        return f"{old} rejoined as a standby of {new}"
    text = f"{old} -> {new}"
    if args.get("site_operation"):
        return f"{text} (part of {args['site_operation']})"
    return f"{text} (part of drill {args['drill']})" if args.get("drill") else text


def describe_site(report: Mapping[str, Any]) -> str:
    """A site operation (report/site.py), in words.

    >>> describe_site({"kind": "site-switchover", "new_primary": "backup", "services": [{}, {}], "groups": [{}]})
    'site switchover to backup: 2 service(s), 1 group(s)'
    """
    kind = str(report["kind"]).removeprefix("site-")
    where = {"switchover": " to ", "failover": " to ", "rejoin": " of "}.get(kind)
    target = f"{where}{report.get('new_primary')}" if where else ""
    return (f"site {kind}{target}: {len(report.get('services') or [])} service(s), "
            f"{len(report.get('groups') or [])} group(s)")


def report_file(report: Mapping[str, Any]) -> str:
    """The page people open: a drill's HTML report, every other operation's Markdown one."""
    return "report.html" if report["kind"] == "drill" else "report.md"


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def write_window(report: Mapping[str, Any]) -> float | None:
    """Seconds the service accepted no write; a full drill's two switchovers add up."""
    observed = report.get("observed") or {}
    if report["kind"] == "drill" and mode(report) == "full":
        parts = [_number(observed.get(f"switchover_{leg}_write_unavailability_seconds")) for leg in ("there", "back")]
        known = [p for p in parts if p is not None]
        return round(sum(known), 4) if known else None
    return _number(report.get("write_unavailability_seconds"))


def rto(report: Mapping[str, Any]) -> float | None:
    """Time until the promoted side accepted writes: the drill's time to ready, an operation's
    write window (a switchover or failover is ready when its new primary takes writes)."""
    measured = _number((report.get("observed") or {}).get("rto_seconds"))
    if measured is not None:
        return measured
    return _number(report.get("write_unavailability_seconds")) if report["kind"] in ("switchover", "failover") \
        else None


def rpo(report: Mapping[str, Any]) -> float | None:
    """Seconds of commits at risk: measured by a drill; 0 for a switchover whose standby replayed
    past the old primary's shutdown checkpoint (proved, not assumed); unknown otherwise."""
    observed = report.get("observed") or {}
    measured = _number(observed.get("rpo_seconds"))
    if measured is not None:
        return measured
    if report["kind"] == "switchover" and "standby_replayed_lsn" in observed:
        return 0.0
    return None


def seconds_text(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def history_entry(report: Mapping[str, Any], directory: str) -> dict[str, Any]:
    """One operation as `dcctl history -o json` prints it."""
    keys = ("operation", "kind", "service", "outcome", "started_at", "wall_seconds", "write_unavailability_seconds",
            "old_primary", "new_primary", "data_loss")
    entry = {key: report.get(key) for key in keys}
    entry.update(mode=mode(report), description=describe(report), report=f"{directory}/{report_file(report)}")
    return entry


def history_row(report: Mapping[str, Any]) -> list[str]:
    """One line of the `dcctl history` table (columns: HISTORY_COLUMNS)."""
    return [report["operation"], kind_label(report), report["outcome"], report["started_at"][:19].replace("T", " "),
            seconds_text(report.get("wall_seconds"), 2), seconds_text(write_window(report)), describe(report)]


def failures_first(reports: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Operations that did not succeed first, each group newest first."""
    newest = sorted(reports, key=lambda r: r["started_at"], reverse=True)
    return [r for r in newest if r["outcome"] != SUCCESS] + [r for r in newest if r["outcome"] == SUCCESS]


def parse_since(text: str, now: float) -> float:
    """`--since`: a number of days, hours or weeks back (90d, 12h, 2w), or a date (2026-01-31, UTC).

    >>> parse_since("2d", 864000.0), parse_since("1970-01-02", 0.0)
    (691200.0, 86400.0)
    """
    from datetime import datetime, timezone

    units = {"h": 3600, "d": 86400, "w": 7 * 86400}
    value = text.strip().lower()
    if value[-1:] in units and value[:-1].replace(".", "", 1).isdigit():
        return now - float(value[:-1]) * units[value[-1]]
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        raise ValueError(f"{text!r} is neither a period (90d, 12h, 2w) nor a date (YYYY-MM-DD)") from None
