"""The file-sync checks of `dcctl check` (pure): they read the status the pushing agent writes
at the primary site (<state_dir>/filesync/<service>/status.json), fetched with the site's disks.

Result names: filesync_lag (CRIT as well when the mass-deletion guard holds a run back, or the
agent stopped reporting), filesync_backlog, filesync_reconcile_age. Free space on the store
volumes is `disk_free`'s. A service without file stores gets no result.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from dcctl.checks.result import CheckResult, Status

if TYPE_CHECKING:  # catalog imports this module to list its checks
    from dcctl.checks.catalog import Facts

OK, WARN, CRIT, UNKNOWN = Status.OK, Status.WARN, Status.CRIT, Status.UNKNOWN
STALE_AFTER = 30.0  # seconds without a status update before the pushing agent counts as gone


def _graded(value: float, warn: float, crit: float) -> Status:
    return CRIT if value >= crit else WARN if value >= warn else OK


def filesync(f: Facts) -> list[CheckResult]:
    t = f.thresholds
    primary = f.primary
    stores = sorted({d.label[len("store:"):] for s in f.view.sites for d in s.disks if d.label.startswith("store:")})
    if not stores:
        return []
    if primary is None:
        return [CheckResult("filesync_lag", UNKNOWN, "no single primary: the direction of file sync is unknown")]
    status = primary.filesync
    site = primary.site
    if status is None:
        return [CheckResult("filesync_lag", UNKNOWN, f"no file-sync status at primary {site}: nothing measures "
                            f"whether its file stores reach the other site; is its agent running (`dcctl agent run "
                            f"--site {site}`)?", site)]
    age = f.now - status.updated_at
    if age > STALE_AFTER:
        return [CheckResult("filesync_lag", CRIT, f"the agent at {site} last reported file sync {age:.0f} s ago: "
                            f"changes are not being pushed", site, round(age, 1), f"{STALE_AFTER:g} s")]
    if not status.active:
        return [CheckResult("filesync_lag", WARN, f"file sync is paused: {status.decision}", site)]
    results = []
    lag_threshold = f"warn {t.filesync_lag_warn_seconds:g}, crit {t.filesync_lag_crit_seconds:g}"
    for name in stores:
        s = status.stores.get(name)
        where = f"store {name} ({site} -> {status.peer})"
        if s is None:
            results.append(CheckResult("filesync_lag", WARN, f"{where}: the agent does not sync it", site))
            continue
        lag = s.lag(f.now)
        if s.blocked:
            results.append(CheckResult("filesync_lag", CRIT, f"{where}: {s.blocked}", site, round(lag, 1),
                                       lag_threshold))
        else:
            status_ = _graded(lag, t.filesync_lag_warn_seconds, t.filesync_lag_crit_seconds)
            error = f"; last error: {s.last_error}" if s.last_error and status_ is not OK else ""
            results.append(CheckResult("filesync_lag", status_, f"{where}: the oldest change not yet on {status.peer} "
                                       f"is {lag:.1f} s old{error}", site, round(lag, 3), lag_threshold))
        results.append(CheckResult("filesync_backlog", _graded(s.pending, t.filesync_backlog_warn,
                                                               t.filesync_backlog_crit),
                                   f"{where}: {s.pending} path(s) waiting", site, s.pending,
                                   f"warn {t.filesync_backlog_warn}, crit {t.filesync_backlog_crit}"))
        threshold = (f"warn {t.filesync_reconcile_age_warn_seconds:g} s, "
                     f"crit {t.filesync_reconcile_age_crit_seconds:g} s")
        if s.last_reconcile_finished_at is None:
            results.append(CheckResult("filesync_reconcile_age", WARN, f"{where}: no full reconciliation has "
                                       f"finished since the agent started", site, None, threshold))
        else:
            age = f.now - s.last_reconcile_finished_at
            results.append(CheckResult("filesync_reconcile_age", _graded(age, t.filesync_reconcile_age_warn_seconds,
                                                                         t.filesync_reconcile_age_crit_seconds),
                                       f"{where}: the last full reconciliation ended {age:.0f} s ago", site,
                                       round(age, 1), threshold))
        if s.watch_problem:
            results.append(CheckResult("filesync_lag", WARN, f"{where}: {s.watch_problem}", site))
    return results
