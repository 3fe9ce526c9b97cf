"""Every metric the agent exports, declared once: name, type, help and labels (pure).

Naming follows Prometheus conventions: the `dcctl_` prefix, base units as suffixes (`_seconds`,
`_bytes`), `_total` on counters, `_info` on the metric that carries descriptive labels.

Label scheme: `service` is the service from the config; `site` is always the site a series is
ABOUT (the agent's own site for node metrics, the peer for `dcctl_peer_up`). The site that
OBSERVED a value is the scrape target itself (Prometheus' `instance` label). Service-wide values
(`dcctl_check_status`, `dcctl_service_primaries`) are exported by both agents, so rules
aggregate them with `max by (service, ...)`. docs/metrics.md documents each metric.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["gauge", "counter"]


@dataclass(frozen=True)
class MetricSpec:
    name: str  # as exposed (counters include _total)
    kind: Kind
    help: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Sample:
    """One value of one metric: what tasks hand to the exposition."""

    name: str
    labels: dict[str, str]
    value: float


COLLECTOR = ("collector", "service")
NODE = ("service", "site")
STORE = ("service", "site", "store")  # file sync: site is the pushing site (this agent's)
POOLER = ("service", "pooler")

# The reason label of dcctl_filesync_reconciliations_total: a short enum, mapped from the sentence
# the file sync logs (its first words); a sentence not listed here counts as "other".
RECONCILE_REASONS = {
    "agent start": "agent_start",
    "interval": "interval",
    "operator run": "operator_run",
    "inotify queue overflow": "inotify_overflow",
    "inotify watch limit": "watch_limit",
    "the store's file system was unmounted": "unmounted",
    "the store directory itself": "store_dir_gone",
    "more than": "max_pending",
}

_SPECS = [
    # --- the agent process ----------------------------------------------------------------------
    MetricSpec("dcctl_build_info", "gauge",
               "Always 1; labels: the dcctl version and the Python version running the agent",
               ("version", "python_version")),
    # --- the agent's own background work, one series per collector and service --------------
    MetricSpec("dcctl_collector_up", "gauge",
               "1 if the collector's last run succeeded, 0 if it failed", COLLECTOR),
    MetricSpec("dcctl_collector_last_success_timestamp_seconds", "gauge",
               "Unix time the collector last succeeded (0: never); the values it feeds are cached from then",
               COLLECTOR),
    MetricSpec("dcctl_collector_last_duration_seconds", "gauge",
               "How long the collector's last run took", COLLECTOR),
    MetricSpec("dcctl_collector_stale_after_seconds", "gauge",
               "Age of the last success beyond which the agent withholds the collector's values and /healthz "
               "fails (2 x interval + timeout)", COLLECTOR),
    MetricSpec("dcctl_collector_runs_total", "counter", "Runs of the collector since the agent started",
               COLLECTOR),
    MetricSpec("dcctl_collector_failures_total", "counter",
               "Runs of the collector that failed since the agent started", COLLECTOR),
    # --- this site ---------------------------------------------------------------------------
    MetricSpec("dcctl_site_info", "gauge",
               "Always 1; label role: this site's PostgreSQL role (primary, standby, unknown)", NODE + ("role",)),
    MetricSpec("dcctl_pg_up", "gauge",
               "1 if this site's PostgreSQL answered the last status query", NODE),
    MetricSpec("dcctl_pg_server_version", "gauge",
               "This site's PostgreSQL server_version_num (e.g. 150018 for 15.18)", NODE),
    MetricSpec("dcctl_pg_in_recovery", "gauge",
               "1 if this site's PostgreSQL is in recovery (a standby), 0 if it accepts writes", NODE),
    MetricSpec("dcctl_pg_timeline", "gauge",
               "Timeline of this site's PostgreSQL (a standby: the one it receives)", NODE),
    MetricSpec("dcctl_pg_current_lsn_bytes", "gauge",
               "Primary: its current WAL write position (pg_current_wal_lsn) as a byte offset", NODE),
    MetricSpec("dcctl_pg_receive_lsn_bytes", "gauge",
               "Standby: last WAL position received and flushed (pg_last_wal_receive_lsn), as a byte offset", NODE),
    MetricSpec("dcctl_pg_replay_lsn_bytes", "gauge",
               "Standby: last WAL position replayed (pg_last_wal_replay_lsn), as a byte offset", NODE),
    MetricSpec("dcctl_pg_replay_paused", "gauge", "Standby: 1 if WAL replay is paused", NODE),
    MetricSpec("dcctl_replication_streaming", "gauge",
               "Standby: 1 if its WAL receiver is streaming from the primary", NODE),
    MetricSpec("dcctl_replication_lag_bytes", "gauge",
               "Standby: WAL the primary has written that this standby has not replayed (absent when the "
               "primary did not answer)", NODE),
    MetricSpec("dcctl_replication_lag_seconds", "gauge",
               "Standby: 0 when replay has caught up with the primary, else the age of the last replayed "
               "transaction (absent when unknown)", NODE),
    MetricSpec("dcctl_replication_slot_active", "gauge",
               "Primary: 1 if the physical replication slot has a connected receiver", NODE + ("slot",)),
    MetricSpec("dcctl_replication_slot_retained_bytes", "gauge",
               "Primary: WAL the replication slot keeps from being removed", NODE + ("slot",)),
    MetricSpec("dcctl_volume_size_bytes", "gauge",
               "Size of the file system holding a volume of this site (data, wal, store:<name>)",
               NODE + ("volume",)),
    MetricSpec("dcctl_volume_avail_bytes", "gauge",
               "Bytes available to unprivileged users (df's Avail) on the file system holding a volume of this "
               "site", NODE + ("volume",)),
    # --- the generation watch (dcctl/agent/watcher.py) ------------------------------------------
    MetricSpec("dcctl_watch_last_success_timestamp_seconds", "gauge",
               "Unix time the generation watch last read this site's PostgreSQL (every agent.watch_interval)",
               NODE),
    MetricSpec("dcctl_watch_peer_last_seen_timestamp_seconds", "gauge",
               "Unix time the generation watch last reached the peer site (its PostgreSQL or its agent)", NODE),
    MetricSpec("dcctl_sync_standby_required", "gauge",
               "Primary in sync or strict mode: 1 if its commits wait for the standby (synchronous_standby_names "
               "set), 0 if they do not (relaxed, or released by a failover)", NODE),
    MetricSpec("dcctl_fence_total", "counter",
               "Times this agent stopped its own PostgreSQL, by reason: stale (another primary superseded it) "
               "or isolated (it reached neither the peer nor the witness)", NODE + ("reason",)),
    # --- the peer, as this agent reaches it ----------------------------------------------------
    MetricSpec("dcctl_peer_up", "gauge",
               "1 if the peer site answered this agent's last collection; target: transport (SSH, or local) "
               "or postgres", ("service", "site", "target")),
    # --- the whole service, as this agent sees it ---------------------------------------------
    MetricSpec("dcctl_service_primaries", "gauge",
               "Sites whose PostgreSQL accepts writes, as seen by this agent: 1 is healthy, 0 no primary, "
               "2 split brain", ("service",)),
    MetricSpec("dcctl_check_status", "gauge",
               "Worst result of each check of `dcctl check`, by result name: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN",
               ("service", "check")),
    # --- drills, from the drill records in the state directory (dcctl/agent/drills.py) ---------
    MetricSpec("dcctl_drill_last_run_timestamp_seconds", "gauge",
               "Unix time the last drill of the service ended (whatever its outcome)", ("service",)),
    MetricSpec("dcctl_drill_last_success_timestamp_seconds", "gauge",
               "Unix time the last successful drill ended; alert on time() - this", ("service",)),
    MetricSpec("dcctl_drill_last_succeeded", "gauge", "1 if the last drill passed, 0 if it failed", ("service",)),
    MetricSpec("dcctl_drill_last_duration_seconds", "gauge", "Wall time of the last drill", ("service",)),
    MetricSpec("dcctl_drill_last_rto_seconds", "gauge",
               "Time to ready the last drill measured (copy started and promoted; full drill: the write "
               "pause of the switchover)", ("service",)),
    MetricSpec("dcctl_drill_last_rpo_seconds", "gauge",
               "Data freshness the last drill measured: seconds the standby was behind the primary", ("service",)),
    # --- site operations, from the site journals in the state directory (dcctl/agent/site_ops.py) ---
    MetricSpec("dcctl_site_operation_last_run_timestamp_seconds", "gauge",
               "Unix time the last site operation of this kind (dcctl site switchover|failover|rejoin|drill) "
               "ended, whatever its outcome", ("kind",)),
    MetricSpec("dcctl_site_operation_last_outcome", "gauge",
               "1 for the outcome of the last site operation of this kind (success, partial, stopped, refused, "
               "other), 0 for the others", ("kind", "outcome")),
    MetricSpec("dcctl_site_operation_last_duration_seconds", "gauge",
               "Wall time of the last site operation of this kind (plan start to its end)", ("kind",)),
    MetricSpec("dcctl_site_operation_last_rto_seconds", "gauge",
               "Site-level RTO of the last site operation of this kind: plan start to the last service "
               "writable (absent when its journal does not record it)", ("kind",)),
    # --- poolers (PgBouncer), exported by the agent of the pooler's site (dcctl/agent/poolers.py) -------
    MetricSpec("dcctl_pooler_up", "gauge", "1 if the pooler's admin console answered the last look", POOLER),
    MetricSpec("dcctl_pooler_paused", "gauge", "1 if the service's databases are paused in the pooler", POOLER),
    MetricSpec("dcctl_pooler_paused_seconds", "gauge",
               "How long the agent has seen the pooler paused (0 when it is not); past stuck_pause_after, with "
               "no live operation holding the lock, the agent resumes it", POOLER),
    MetricSpec("dcctl_pooler_points_at_primary", "gauge",
               "1 if every database the pooler serves for the service points at the current primary (SHOW "
               "DATABASES host and port), 0 if not (absent when no single primary is known)", POOLER),
    MetricSpec("dcctl_pooler_clients_waiting", "gauge",
               "Clients waiting for a server connection in the pooler (SHOW POOLS cl_waiting)", POOLER),
    MetricSpec("dcctl_pooler_agent_resumes_total", "counter",
               "Times this agent resumed the pooler because it stayed paused with no operation holding the "
               "lock", POOLER),
    # --- file sync, exported by each agent for its own site's stores (dcctl/agent/filesync_task.py) ----
    MetricSpec("dcctl_filesync_active", "gauge",
               "1 if this site pushes the store to the other site now (it is the primary), else 0", STORE),
    MetricSpec("dcctl_filesync_lag_seconds", "gauge",
               "Pushing site: age of the oldest change not yet on the other site (0 when all is there)", STORE),
    MetricSpec("dcctl_filesync_pending_files", "gauge",
               "Pushing site: paths changed and not yet on the other site (deletions the guard holds back "
               "included)", STORE),
    MetricSpec("dcctl_filesync_blocked", "gauge",
               "Pushing site: 1 if the mass-deletion guard refused a batch or reconciliation and waits for "
               "`dcctl filesync run --allow-mass-delete`", STORE),
    MetricSpec("dcctl_filesync_watched_directories", "gauge",
               "Pushing site: directories of the store under an inotify watch", STORE),
    MetricSpec("dcctl_filesync_last_batch_timestamp_seconds", "gauge",
               "Pushing site: Unix time the last batch of changes was pushed", STORE),
    MetricSpec("dcctl_filesync_last_reconcile_timestamp_seconds", "gauge",
               "Pushing site: Unix time the last full reconciliation ended successfully", STORE),
    MetricSpec("dcctl_filesync_synced_through_timestamp_seconds", "gauge",
               "Pushing site: every change made before this Unix time is on the other site", STORE),
    MetricSpec("dcctl_filesync_holding_bytes", "gauge",
               "Receiving site: bytes of the files sync replaced or deleted that its holding area keeps (this "
               "site; cached, measured every minute)", STORE),
    MetricSpec("dcctl_filesync_holding_files", "gauge",
               "Receiving site: files its holding area keeps (this site; cached, measured every minute)", STORE),
    MetricSpec("dcctl_filesync_files_transferred_total", "counter",
               "Files whose content this agent pushed to the other site", STORE),
    MetricSpec("dcctl_filesync_bytes_transferred_total", "counter",
               "Bytes of file content this agent pushed to the other site", STORE),
    MetricSpec("dcctl_filesync_errors_total", "counter",
               "File-sync failures by kind: rsync, peer_unreachable, mass_delete, missed_events (inotify "
               "overflow), watch_limit, watch, receipt, handed_over, internal", STORE + ("kind",)),
    MetricSpec("dcctl_filesync_reconciliations_total", "counter",
               "Full reconciliations that succeeded, by reason: " + ", ".join([*RECONCILE_REASONS.values(), "other"]),
               STORE + ("reason",)),
]

METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in _SPECS}

def reconcile_reason(sentence: str) -> str:
    """The short enum for a reconciliation reason the file sync logs as a sentence.

    >>> reconcile_reason("inotify queue overflow (events were dropped)"), reconcile_reason("operator run")
    ('inotify_overflow', 'operator_run')
    >>> reconcile_reason("more than 100000 paths waiting (filesync.max_pending)"), reconcile_reason("???")
    ('max_pending', 'other')
    """
    for start, reason in RECONCILE_REASONS.items():
        if sentence.startswith(start):
            return reason
    return "other"


def counts_by_reason(counts: dict[str, int]) -> dict[str, int]:
    """Counts keyed by sentence -> counts keyed by reason enum (two sentences may share one)."""
    out: dict[str, int] = {}
    for sentence, count in counts.items():
        reason = reconcile_reason(sentence)
        out[reason] = out.get(reason, 0) + count
    return out


def sample(name: str, value: float | bool, **labels: str) -> Sample:
    """A Sample of a declared metric; an undeclared name or a wrong label set is a bug.

    >>> sample("dcctl_pg_up", True, service="massar", site="rabat")
    Sample(name='dcctl_pg_up', labels={'service': 'massar', 'site': 'rabat'}, value=1.0)
    """
    spec = METRICS[name]
    if set(labels) != set(spec.labels):
        raise ValueError(f"{name} takes labels {spec.labels}, got {tuple(labels)}")
    return Sample(name, labels, float(value))
