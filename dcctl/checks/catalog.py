"""The health checks of `dcctl check`, each a pure function of one ServiceView snapshot.

CATALOG is the list operators see in `dcctl check --list`; the agent exports every result as
dcctl_check_status{check=...}.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from dcctl.checks import filesync, site_split
from dcctl.checks import poolers as pooler_checks
from dcctl.checks.result import CheckResult, Status
from dcctl.config.schema import Thresholds
from dcctl.generation_rules import judge_primaries, running_primaries
from dcctl.model import Generation, ServiceView, SiteStatus
from dcctl.status_report import replay_lag_bytes, replay_lag_seconds
from dcctl.units import human_bytes

OK, WARN, CRIT, UNKNOWN = Status.OK, Status.WARN, Status.CRIT, Status.UNKNOWN


@dataclass(frozen=True)
class Facts:
    """What the checks read: the snapshot, the thresholds, and records kept by dcctl."""

    view: ServiceView
    thresholds: Thresholds
    last_drill_success: float | None = None  # epoch seconds, None: no drill recorded
    now: float = 0.0
    recorded_generation: Generation | None = None
    # every service of the config -> the site of its primary (site_split.primary_site); None: not gathered
    service_primaries: dict[str, str | None] | None = None
    # the service's PgBouncers as their consoles answered (None: the service has none, or not gathered),
    # and the primary's address as they would name it (host, port)
    poolers: list[pooler_checks.PoolerFact] | None = None
    pooler_primary: tuple[str, int] | None = None

    @property
    def primary(self) -> SiteStatus | None:
        primaries = self.view.primaries()
        return primaries[0] if len(primaries) == 1 else None

    def standbys(self) -> list[SiteStatus]:
        """Every site that should be a standby: all but the primary (all, when the primary is unknown)."""
        primary = self.primary
        return [s for s in self.view.sites if primary is None or s.site != primary.site]


Check = Callable[[Facts], list[CheckResult]]


def site_reachable(f: Facts) -> list[CheckResult]:
    results = []
    for s in f.view.sites:
        if s.reachable:
            results.append(CheckResult("site_reachable", OK, f"{s.transport} answers", s.site, True))
        else:
            results.append(CheckResult("site_reachable", CRIT, f"site {s.site} is unreachable: {s.transport_error}",
                                       s.site, False))
    return results


def postgres_up(f: Facts) -> list[CheckResult]:
    return [CheckResult("postgres_up", OK, f"PostgreSQL at {s.postgres} answers ({s.role.value})", s.site, True)
            if s.postgres_up else
            CheckResult("postgres_up", CRIT, s.postgres_error or f"PostgreSQL at {s.postgres} is down", s.site, False)
            for s in f.view.sites]


def one_primary(f: Facts) -> list[CheckResult]:
    primaries = [s.site for s in f.view.primaries()]
    if len(primaries) == 1:
        return [CheckResult("one_primary", OK, f"{primaries[0]} is the only primary", None, 1, "exactly 1")]
    if not primaries:
        unknown = [s.site for s in f.view.sites if not s.postgres_up]
        why = f" ({', '.join(unknown)} did not answer)" if unknown else ""
        return [CheckResult("one_primary", CRIT, f"no site runs a writable primary{why}", None, 0, "exactly 1")]
    return [CheckResult("one_primary", CRIT, f"SPLIT BRAIN: {' and '.join(primaries)} both accept writes; "
                                             f"stop writers and fence one of them now", None, len(primaries),
                        "exactly 1")]


def replication_streaming(f: Facts) -> list[CheckResult]:
    results = []
    for s in f.standbys():
        node = s.node
        if node is None:
            results.append(CheckResult("replication_streaming", CRIT,
                                       f"standby {s.site} is down, nothing replicates: {s.postgres_error}",
                                       s.site, "down", "streaming"))
        elif not node.in_recovery:
            continue  # a second primary: one_primary says so
        elif node.receiver_status != "streaming":
            state = node.receiver_status or "no WAL receiver"
            results.append(CheckResult("replication_streaming", CRIT, f"standby {s.site} is in recovery but not "
                                       f"streaming ({state})", s.site, state, "streaming"))
        else:
            results.append(CheckResult("replication_streaming", OK, f"standby {s.site} streams from {node.upstream}",
                                       s.site, "streaming", "streaming"))
    return results


RECEIVER_PING_MARGIN = 5.0  # seconds: the ping, its answer, and the status interval's jitter


def receiver_contact(f: Facts) -> list[CheckResult]:
    """A live WAL receiver hears from the primary at least every wal_receiver_timeout / 2 (it pings
    an idle primary then); one silent for longer is hung, or its primary's walsender is."""
    results = []
    for s in f.standbys():
        node = s.node
        if node is None or not node.in_recovery or node.receiver_status != "streaming" or node.receipt_age is None:
            continue  # replication_streaming reports a standby that does not stream
        timeout = float(node.settings.get("wal_receiver_timeout") or 0) / 1000
        if timeout <= 0:
            results.append(CheckResult("receiver_contact", UNKNOWN, f"standby {s.site}: wal_receiver_timeout is 0, "
                                       f"so an idle primary never has to answer: silence proves nothing", s.site,
                                       round(node.receipt_age, 1)))
            continue
        warn, crit = timeout / 2 + RECEIVER_PING_MARGIN, timeout
        status = _graded(node.receipt_age, warn, crit)
        hung = "" if status is OK else ": its WAL receiver (or the primary's walsender) may be hung"
        results.append(CheckResult("receiver_contact", status, f"standby {s.site} last heard from the primary "
                                   f"{node.receipt_age:.1f} s ago{hung}", s.site, round(node.receipt_age, 1),
                                   f"warn {warn:g} s, crit {crit:g} s (wal_receiver_timeout {timeout:g} s)"))
    return results


def _graded(value: float, warn: float, crit: float) -> Status:
    return CRIT if value >= crit else WARN if value >= warn else OK


def replication_lag(f: Facts) -> list[CheckResult]:
    t = f.thresholds
    results = []
    primary = f.primary
    for s in f.standbys():
        if s.node is None or not s.node.in_recovery:
            continue
        if primary is None or primary.node is None:
            for name in ("replication_lag_bytes", "replication_lag_seconds"):
                results.append(CheckResult(name, UNKNOWN, "no primary answered: lag cannot be measured", s.site))
            continue
        lag_bytes = replay_lag_bytes(primary.node.current_lsn, s.node.replay_lsn)
        lag_seconds = replay_lag_seconds(lag_bytes, s.node)
        paused = " (replay is paused)" if s.node.replay_paused else ""
        if lag_bytes is None:
            results.append(CheckResult("replication_lag_bytes", UNKNOWN, f"standby {s.site} or the primary reported "
                                       f"no WAL position: lag cannot be measured", s.site))
            continue
        status = _graded(lag_bytes, t.lag_bytes_warn, t.lag_bytes_crit)
        results.append(CheckResult("replication_lag_bytes", status,
                                   f"standby {s.site} has {human_bytes(lag_bytes)} of WAL left to replay{paused}",
                                   s.site, lag_bytes, f"warn {human_bytes(t.lag_bytes_warn)}, crit {human_bytes(t.lag_bytes_crit)}"))
        if lag_seconds is None:
            results.append(CheckResult("replication_lag_seconds", UNKNOWN, f"standby {s.site} has replayed no "
                                       f"transaction yet, so its replay lag in seconds is unknown", s.site, None,
                                       f"warn {t.lag_seconds_warn:g}, crit {t.lag_seconds_crit:g}"))
        else:
            status = _graded(lag_seconds, t.lag_seconds_warn, t.lag_seconds_crit)
            results.append(CheckResult("replication_lag_seconds", status,
                                       f"standby {s.site} replays {lag_seconds:.1f} s behind the primary{paused}",
                                       s.site, round(lag_seconds, 3),
                                       f"warn {t.lag_seconds_warn:g}, crit {t.lag_seconds_crit:g}"))
    return results


def replication_slots(f: Facts) -> list[CheckResult]:
    t = f.thresholds
    primary = f.primary
    if primary is None or primary.node is None:
        return [CheckResult("replication_slots", UNKNOWN, "no primary answered: slots cannot be read")]
    results = []
    wanted = {s.node.receiver_slot for s in f.standbys() if s.node and s.node.receiver_slot}
    wanted |= {named for s in f.standbys() if s.node and (named := s.node.settings.get("primary_slot_name"))}
    slots = {slot.name: slot for slot in primary.node.slots}
    for name in sorted(wanted - set(slots)):
        results.append(CheckResult("replication_slots", CRIT, f"the standby's slot {name} does not exist on "
                                   f"primary {primary.site}: WAL it needs may be removed", primary.site, name))
    threshold = f"warn {human_bytes(t.slot_retained_bytes_warn)}, crit {human_bytes(t.slot_retained_bytes_crit)}"
    for slot in sorted(slots.values(), key=lambda s: s.name):
        retained = slot.retained_bytes or 0
        status = _graded(retained, t.slot_retained_bytes_warn, t.slot_retained_bytes_crit)
        if not slot.active and retained > 0:
            status = max(status, WARN, key=lambda s: s.severity)
            detail = (f"slot {slot.name} on {primary.site} is inactive and retains {human_bytes(retained)} of WAL"
                      + ("" if slot.name in wanted else "; drop it if no standby uses it "
                         f"(SELECT pg_drop_replication_slot('{slot.name}'))"))
        else:
            detail = (f"slot {slot.name} on {primary.site} is {'active' if slot.active else 'inactive'}, "
                      f"retains {human_bytes(retained)}")
        results.append(CheckResult("replication_slots", status, detail, primary.site, retained, threshold))
    return results or [CheckResult("replication_slots", WARN, f"primary {primary.site} has no physical slot: "
                                   f"a lagging standby can lose WAL it needs", primary.site, 0)]


def _timeline(view: ServiceView, site: str) -> int | None:
    node = view.site(site).node
    return node.timeline if node else None


def generation(f: Facts) -> list[CheckResult]:
    recorded = f.recorded_generation
    verdict = judge_primaries(running_primaries(f.view), recorded)
    results = [CheckResult("generation", CRIT, f"STALE PRIMARY {site}: {why}; stop it now (dcctl node stop --site "
                           f"{site} --mode immediate), then dcctl rejoin --site {site}", site,
                           _timeline(f.view, site), str(recorded.generation) if recorded else None)
               for site, why in verdict.stale.items()]
    if verdict.ambiguous:
        results.append(CheckResult("generation", CRIT, f"TWO PRIMARIES: {verdict.why_ambiguous}; stop writers, "
                                   f"compare the two and stop the one to abandon (dcctl node stop --site SITE "
                                   f"--mode immediate), then dcctl rejoin --site SITE", None,
                                   len(verdict.ambiguous), str(recorded.generation) if recorded else None))
    if results:
        return results
    if recorded is None:
        return [CheckResult("generation", OK, "no promotion recorded yet by dcctl")]
    return [CheckResult("generation", OK, f"generation {recorded.generation} (primary {recorded.primary}); no stale "
                        f"primary", None, recorded.generation)]


def timeline_consistent(f: Facts) -> list[CheckResult]:
    primary = f.primary
    if primary is None or primary.node is None:
        return [CheckResult("timeline_consistent", UNKNOWN, "no primary answered: timelines cannot be compared")]
    results = []
    for s in f.standbys():
        if s.node is None or not s.node.in_recovery:
            continue
        tl, ptl = s.node.timeline, primary.node.timeline
        if tl == ptl:
            results.append(CheckResult("timeline_consistent", OK, f"standby {s.site} and primary {primary.site} are "
                                       f"both on timeline {ptl}", s.site, tl, str(ptl)))
        else:
            results.append(CheckResult("timeline_consistent", CRIT, f"standby {s.site} is on timeline {tl}, primary "
                                       f"{primary.site} on {ptl}: it follows an old history and needs a rejoin",
                                       s.site, tl, str(ptl)))
    return results


def readiness_problems(settings: dict[str, str]) -> list[str]:
    """What keeps a node from being a standby, a new primary, or rewound after a failover.

    >>> readiness_problems({"wal_level": "replica", "wal_log_hints": "off", "data_checksums": "off",
    ...                     "max_wal_senders": "10", "max_replication_slots": "10", "hot_standby": "on"})
    ['neither wal_log_hints nor data checksums are on, so pg_rewind cannot rejoin this node after a failover: set wal_log_hints = on (restart needed)']
    """
    problems = []
    if settings.get("wal_level") not in ("replica", "logical"):
        problems.append(f"wal_level is {settings.get('wal_level')}: set wal_level = replica (restart needed)")
    if settings.get("wal_log_hints") != "on" and settings.get("data_checksums") != "on":
        problems.append("neither wal_log_hints nor data checksums are on, so pg_rewind cannot rejoin this node after "
                        "a failover: set wal_log_hints = on (restart needed)")
    if int(settings.get("max_wal_senders") or 0) < 2:
        problems.append(f"max_wal_senders is {settings.get('max_wal_senders')}: set at least 2 (a standby and a "
                        f"pg_basebackup with -X stream), restart needed")
    if int(settings.get("max_replication_slots") or 0) < 1:
        problems.append("max_replication_slots is 0: set at least 1 (restart needed)")
    if settings.get("wal_keep_size") == "0" and settings.get("archive_mode") in ("off", None):
        problems.append("wal_keep_size is 0 and archive_mode is off: after a failover the old primary may no longer "
                        "have the WAL a rewind needs (then only a re-clone rejoins it): set wal_keep_size = 1GB "
                        "or archive WAL")
    if settings.get("hot_standby") != "on":
        problems.append("hot_standby is off: set hot_standby = on so dcctl can watch the node as a standby")
    return problems


def failover_readiness(f: Facts) -> list[CheckResult]:
    results = []
    for s in f.view.sites:
        if s.node is None:
            results.append(CheckResult("failover_readiness", UNKNOWN, f"PostgreSQL at {s.site} did not answer",
                                       s.site))
            continue
        problems = readiness_problems(s.node.settings)
        if problems:
            results.append(CheckResult("failover_readiness", WARN, f"{s.site}: " + "; ".join(problems), s.site,
                                       len(problems), "0 problems"))
        else:
            results.append(CheckResult("failover_readiness", OK, f"{s.site} has the settings switchover, failover "
                                       f"and rewind need", s.site, 0, "0 problems"))
    return results


def disk_free(f: Facts) -> list[CheckResult]:
    t = f.thresholds
    results = []
    threshold = f"warn < {t.disk_free_warn_ratio:.0%}, crit < {t.disk_free_crit_ratio:.0%}"
    for s in f.view.sites:
        if not s.reachable:
            results.append(CheckResult("disk_free", UNKNOWN, f"site {s.site} is unreachable", s.site))
            continue
        for disk in s.disks:
            if disk.free_ratio is None:
                results.append(CheckResult("disk_free", UNKNOWN, f"{disk.label}: cannot measure {disk.path}: "
                                           f"{disk.error}",
                                           s.site, None, threshold))
                continue
            ratio = disk.free_ratio
            status = CRIT if ratio < t.disk_free_crit_ratio else WARN if ratio < t.disk_free_warn_ratio else OK
            results.append(CheckResult("disk_free", status, f"{disk.label}: {ratio:.0%} free "
                                       f"({human_bytes(disk.free_bytes)} of {human_bytes(disk.total_bytes)}) at "
                                       f"{disk.path}", s.site, round(ratio, 4), threshold))
    return results


def clock_skew(f: Facts) -> list[CheckResult]:
    t = f.thresholds
    offsets = {s.site: s.node.clock_offset for s in f.view.sites if s.node and s.node.clock_offset is not None}
    if len(offsets) < 2:
        return [CheckResult("clock_skew", UNKNOWN, "needs both sites' PostgreSQL to compare clocks")]
    (a, oa), (b, ob) = list(offsets.items())[:2]
    skew = abs(oa - ob)
    status = _graded(skew, t.clock_skew_warn_seconds, t.clock_skew_crit_seconds)
    return [CheckResult("clock_skew", status, f"the clocks of {a} and {b} differ by {skew:.3f} s", None,
                        round(skew, 3), f"warn {t.clock_skew_warn_seconds:g}, crit {t.clock_skew_crit_seconds:g}")]


def drill_age(f: Facts) -> list[CheckResult]:
    t = f.thresholds
    threshold = f"warn > {t.drill_max_age_days:g} days"
    if f.last_drill_success is None:
        return [CheckResult("drill_age", UNKNOWN, "no successful drill is recorded: nothing has proved yet that the "
                                                  "backup site can take over", None, None, threshold)]
    days = (f.now - f.last_drill_success) / 86400
    status = WARN if days > t.drill_max_age_days else OK
    return [CheckResult("drill_age", status, f"the last successful drill was {days:.1f} days ago", None,
                        round(days, 2), threshold)]


CATALOG: dict[str, tuple[Check, str]] = {
    "site_reachable": (site_reachable, "each site answers over its transport"),
    "postgres_up": (postgres_up, "each site's PostgreSQL answers"),
    "one_primary": (one_primary, "exactly one site accepts writes"),
    "replication_streaming": (replication_streaming, "the standby is in recovery and streaming"),
    "receiver_contact": (receiver_contact, "the standby's WAL receiver hears from the primary"),
    "replication_lag": (replication_lag, "replay lag in bytes and seconds against the thresholds"),
    "replication_slots": (replication_slots, "slots active; WAL retained under the thresholds"),
    "generation": (generation, "no node accepts writes on an older generation than the recorded one"),
    "timeline_consistent": (timeline_consistent, "the standby follows the primary's timeline"),
    "failover_readiness": (failover_readiness, "settings switchover, failover and pg_rewind need"),
    "disk_free": (disk_free, "free space on data, WAL and file-store volumes"),
    "clock_skew": (clock_skew, "clock difference between the sites"),
    "drill_age": (drill_age, "age of the last successful drill"),
    "filesync": (filesync.filesync, "file sync: lag (and the mass-deletion guard), backlog, last reconciliation"),
    "site_split": (lambda f: site_split.site_split(f.service_primaries),
                   "every service of the config has its primary in the same site"),
    "pooler": (pooler_checks.poolers, "each PgBouncer answers, points at the primary and is not paused"),
}


# Checks whose results carry other names than the check's own (every other check's results carry its
# name). Alerts show result names (dcctl_check_status{check=...}), so `--check` accepts both.
RESULT_NAMES: dict[str, tuple[str, ...]] = {
    "replication_lag": ("replication_lag_bytes", "replication_lag_seconds"),
    "filesync": ("filesync_lag", "filesync_backlog", "filesync_reconcile_age"),
}
SELECTABLE = [*CATALOG, *(result for results in RESULT_NAMES.values() for result in results)]


def check_of(name: str) -> str:
    """The catalog check that yields a check or result name.

    >>> check_of("filesync_lag"), check_of("disk_free")
    ('filesync', 'disk_free')
    """
    return next((check for check, results in RESULT_NAMES.items() if name in results), name)


def run_checks(facts: Facts, names: list[str] | None = None) -> list[CheckResult]:
    """Every check, or those `names` selects: a check name keeps all its results, a result name its own
    (or, when the check yields none by that name, all of the check's results, which say why)."""
    results = []
    for name, (check, _help) in CATALOG.items():
        if names is None or name in names:
            results.extend(check(facts))
        elif any(check_of(wanted) == name for wanted in names):
            produced = check(facts)
            # none by that name (e.g. no backlog while nothing measures file sync): the ones that say why
            results.extend([r for r in produced if r.name in names] or produced)
    return results
