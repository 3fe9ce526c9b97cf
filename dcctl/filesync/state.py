"""What file sync records at the sites, as versioned JSON (pure).

- `status.json` at the source site, written by the pushing agent about once a second: the
  live state of each store (pending, lag, last batch, last reconciliation, guard, counters).
  The agent owns every field; `dcctl check`, `dcctl filesync status` and the operations read it.
- `<store>.run.json` at the source site, written by `dcctl filesync run` and the operations: the
  last reconciliation an operator ran (the agent reconciles again when it sees it change).
- `<store>.received.json` at the receiving site, written by whoever pushed: "every change made on the
  source before `synced_through` is here". A failover reads it at the surviving site, so it
  still knows what may be missing when the old primary is gone.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

VERSION = 1


@dataclass
class StoreStatus:
    store: str
    source: str  # the store's directory at the source site
    target: str  # what rsync names as the receiver (host:path/ or path/)
    pending: int = 0
    oldest_pending_at: float | None = None  # wall time of the oldest change not yet on the receiver
    last_batch_at: float | None = None  # end of the last successful batch
    last_error: str | None = None  # the last failure, cleared by the next success
    last_error_at: float | None = None
    last_reconcile_started_at: float | None = None  # start of the last successful full reconciliation
    last_reconcile_finished_at: float | None = None
    last_reconcile_seconds: float | None = None
    last_reconcile_reason: str | None = None
    synced_through: float | None = None  # every change before this is on the receiver
    blocked: str | None = None  # the mass-deletion guard's refusal, until an operator acts
    receiver_entries: int | None = None
    files_total: int = 0  # since the agent started
    bytes_total: int = 0
    errors_total: dict[str, int] = field(default_factory=dict)  # by kind
    reconciles_total: dict[str, int] = field(default_factory=dict)  # by reason
    watched_dirs: int = 0
    watch_problem: str | None = None  # e.g. the inotify watch limit, with the sysctl to raise

    def lag(self, now: float) -> float:
        return max(0.0, now - self.oldest_pending_at) if self.oldest_pending_at is not None else 0.0


@dataclass
class SyncStatus:
    service: str
    site: str  # the agent's site
    peer: str
    active: bool  # this site pushes
    decision: str  # the sentence of decide.push_decision
    updated_at: float
    pid: int
    started_at: float
    stores: dict[str, StoreStatus] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"version": VERSION, **asdict(self)}, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "SyncStatus":
        """
        >>> s = SyncStatus("massar", "rabat", "backup", True, "rabat is the primary", 10.0, 1, 5.0,
        ...                {"documents": StoreStatus("documents", "/srv/d", "/m/d/", pending=3)})
        >>> SyncStatus.from_json(s.to_json()) == s
        True
        """
        raw = json.loads(text)
        stores = {name: _build(StoreStatus, value) for name, value in (raw.get("stores") or {}).items()}
        return _build(cls, {**raw, "stores": stores})


@dataclass
class Receipt:
    """At the receiving site, one per store: what reached it, and from where."""

    service: str
    store: str
    source_site: str
    written_at: float
    synced_through: float | None = None  # every change made at the source before this time is here
    last_reconcile_at: float | None = None

    def to_json(self) -> str:
        return json.dumps({"version": VERSION, **asdict(self)}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Receipt":
        """
        >>> r = Receipt("massar", "documents", "rabat", 9.0, 8.5)
        >>> Receipt.from_json(r.to_json()) == r
        True
        """
        return _build(cls, json.loads(text))


@dataclass
class RunRecord:
    """At the source site, one per store: the last reconciliation an operator ran (`dcctl filesync
    run`, a switchover's final sync, a rejoin)."""

    service: str
    store: str
    source_site: str
    started_at: float
    finished_at: float
    outcome: str  # ok, refused, failed
    detail: str
    by: str  # the command or operation
    last_ok_started_at: float | None = None  # start of the last run whose outcome was ok

    def to_json(self) -> str:
        return json.dumps({"version": VERSION, **asdict(self)}, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "RunRecord":
        return _build(cls, json.loads(text))


def _build(cls, raw: dict[str, Any]):
    """Known fields only: a newer writer may add some, an older one may lack some (defaults)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in names})


def reconciled_since(status: SyncStatus | None, run: RunRecord | None, store: str) -> float | None:
    """Start of the most recent successful full reconciliation of `store`, by the agent or an operator."""
    times = []
    if status is not None and store in status.stores:
        times.append(status.stores[store].last_reconcile_started_at)
    if run is not None:
        times.append(run.last_ok_started_at)
    known = [t for t in times if t is not None]
    return max(known) if known else None
