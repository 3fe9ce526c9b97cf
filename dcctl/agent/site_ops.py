"""The site-operation collector: the outcome, time, duration and site-level RTO of the last site
operation of each kind (`dcctl site switchover|failover|rejoin|drill`), read from the site
journals dcctl leaves in its state directory (STATE_DIR/operations/site-*/journal.jsonl, see
dcctl/site/decide.py for their entries).

`summarize` and `site_samples` are pure: a test hands them parsed journals.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcctl.agent.metrics import Sample, sample
from dcctl.agent.setup import AgentSetup
from dcctl.ops.journal import operations_dir

# The outcomes a finished site operation records (its `finish` entry); any other word counts as "other".
SITE_OUTCOMES = ("success", "partial", "stopped", "refused")
SITE_LABEL = "(site)"  # the `service` label of the collector's own series: a site operation is no one service's


@dataclass(frozen=True)
class SiteOperationSummary:
    """What the metrics need of one finished site operation."""

    operation: str
    kind: str  # switchover | failover | rejoin | drill
    outcome: str
    started_ts: float
    ended_ts: float
    rto_seconds: float | None  # plan start -> last service writable, when the journal records it

    @property
    def duration_seconds(self) -> float:
        return max(0.0, self.ended_ts - self.started_ts)


def summarize(entries: list[dict[str, Any]]) -> SiteOperationSummary | None:
    """One site journal's summary; None while it runs or after a crash (no `finish` yet: its
    outcome is not known), or when it is not a site operation's journal.

    >>> header = {"ts": 100.0, "event": "operation", "op": "site-switchover-20261204-171500-1a2b",
    ...           "kind": "site-switchover", "site_operation": True}
    >>> s = summarize([header, {"ts": 103.5, "event": "finish", "outcome": "success", "rto_seconds": 1.2}])
    >>> s.kind, s.outcome, s.duration_seconds, s.rto_seconds
    ('switchover', 'success', 3.5, 1.2)
    >>> summarize([header, {"ts": 101.0, "event": "group_start", "group": 0}]) is None
    True
    """
    if not entries or not entries[0].get("site_operation") or entries[-1].get("event") != "finish":
        return None
    header, finish = entries[0], entries[-1]
    kind = str(header.get("kind", "")).removeprefix("site-")
    rto = finish.get("rto_seconds", header.get("rto_seconds"))
    return SiteOperationSummary(operation=str(header.get("op", "")), kind=kind or "unknown",
                                outcome=str(finish.get("outcome", "")), started_ts=float(header["ts"]),
                                ended_ts=float(finish["ts"]),
                                rto_seconds=float(rto) if isinstance(rto, (int, float)) else None)


def latest_by_kind(summaries: list[SiteOperationSummary]) -> dict[str, SiteOperationSummary]:
    """The newest finished operation of each kind (by the time it ended).

    >>> a = SiteOperationSummary("a", "switchover", "success", 0, 10, None)
    >>> b = SiteOperationSummary("b", "switchover", "stopped", 20, 30, None)
    >>> latest_by_kind([b, a])["switchover"].operation
    'b'
    """
    latest: dict[str, SiteOperationSummary] = {}
    for summary in summaries:
        current = latest.get(summary.kind)
        if current is None or summary.ended_ts >= current.ended_ts:
            latest[summary.kind] = summary
    return latest


def site_samples(summaries: list[SiteOperationSummary]) -> list[Sample]:
    """The dcctl_site_operation_* samples of the newest operation of each kind.

    >>> s = SiteOperationSummary("x", "failover", "partial", 0.0, 12.0, None)
    >>> [(x.name.removeprefix("dcctl_site_operation_"), x.labels.get("outcome"), x.value) for x in site_samples([s])]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('last_run_timestamp_seconds', None, 12.0), ('last_duration_seconds', None, 12.0),
     ('last_outcome', 'success', 0.0), ('last_outcome', 'partial', 1.0), ('last_outcome', 'stopped', 0.0),
     ('last_outcome', 'refused', 0.0), ('last_outcome', 'other', 0.0)]
    """
    out = []
    for kind, last in sorted(latest_by_kind(summaries).items()):
        out.append(sample("dcctl_site_operation_last_run_timestamp_seconds", last.ended_ts, kind=kind))
        out.append(sample("dcctl_site_operation_last_duration_seconds", last.duration_seconds, kind=kind))
        if last.rto_seconds is not None:
            out.append(sample("dcctl_site_operation_last_rto_seconds", last.rto_seconds, kind=kind))
        outcome = last.outcome if last.outcome in SITE_OUTCOMES else "other"
        for word in (*SITE_OUTCOMES, "other"):
            out.append(sample("dcctl_site_operation_last_outcome", word == outcome, kind=kind, outcome=word))
    return out


def read_summaries(state_dir: str) -> list[SiteOperationSummary]:
    """Every finished site operation in dcctl's state directory (a directory listing and one journal
    read per site operation; unreadable journals are skipped, `dcctl history` names them)."""
    from dcctl.ops.journal import Journal, JournalError

    base = operations_dir(state_dir)
    if not base.exists():
        return []
    found = []
    for directory in sorted(p for p in base.iterdir() if p.name.startswith("site-")):
        try:
            summary = summarize(Journal(Path(directory) / "journal.jsonl").entries())
        except (JournalError, OSError, KeyError, TypeError, ValueError):
            continue
        if summary is not None:
            found.append(summary)
    return found


class SiteOperationSource:
    collector = "site_operations"

    def __init__(self, setup: AgentSetup):
        self.setup = setup
        self.service = SITE_LABEL
        self.interval = setup.agent.interval
        self.timeout = 30.0

    def collect(self) -> list[SiteOperationSummary]:
        return read_summaries(self.setup.config.state_dir)

    def samples(self, snapshot: list[SiteOperationSummary]) -> list[Sample]:
        return site_samples(snapshot)

    def changes(self, old: list[SiteOperationSummary] | None, new: list[SiteOperationSummary]) -> list[str]:
        seen = {s.operation for s in old} if old is not None else None
        if seen is None:
            return []
        return [f"site {s.kind} {s.operation}: {s.outcome}" for s in new if s.operation not in seen]
