"""Should this operation start? Pure decisions over one ServiceView: every reason to refuse is
listed at once, each a sentence saying what is wrong and what to do."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dcctl.checks.catalog import readiness_problems
from dcctl.config.schema import ServiceConfig
from dcctl.model import Role, ServiceView
from dcctl.status_report import replay_lag_bytes
from dcctl.units import human_bytes


def needs_volumes(kind: str, args: Mapping[str, Any]) -> bool:
    """Whether planning looks at the sites' free space (a switchover refuses on a full volume; a
    failover never waits for space)."""
    return kind == "switchover" or (kind == "drill" and args.get("mode") == "full")


def choose_roles(view: ServiceView, to_site: str | None) -> tuple[str | None, str | None]:
    """(current primary, target) for switchover and failover; target defaults to the other site."""
    names = [s.site for s in view.sites]
    primaries = [s.site for s in view.primaries()]
    if to_site:
        old = next((n for n in names if n != to_site), None)
        return old, to_site
    if len(primaries) == 1:
        return primaries[0], next(n for n in names if n != primaries[0])
    standbys = [s.site for s in view.sites if s.role is Role.STANDBY]
    if len(standbys) == 1:
        return next(n for n in names if n != standbys[0]), standbys[0]
    return None, None


def switchover_refusals(view: ServiceView, service: ServiceConfig, old: str | None, new: str | None, *,
                        check_receipt: bool = True, min_free_ratio: float = 0.0) -> list[str]:
    """check_receipt=False when the view was not taken right after a commit on the primary (an idle
    primary's receiver legitimately hears nothing for up to wal_receiver_timeout / 2). A volume of
    either site with less than min_free_ratio free refuses (the view must carry disks)."""
    if old is None or new is None:
        return ["cannot tell which site is the primary and which the standby: " + _roles(view)]
    if new not in service.sites:
        return [f"no site named {new!r}; sites: {', '.join(service.sites)}"]
    reasons = []
    o, n = view.site(old), view.site(new)
    for site in (o, n):
        if not site.reachable:
            reasons.append(f"site {site.site} is unreachable: {site.transport_error}")
    if o.role is not Role.PRIMARY:
        reasons.append(f"site {old} is not a running primary ({o.postgres_error or o.role.value}); "
                       f"if it is lost, this is a failover")
    if n.role is not Role.STANDBY:
        reasons.append(f"site {new} is not a running standby ({n.postgres_error or n.role.value})")
    elif n.answered().receiver_status != "streaming":
        reasons.append(f"standby {new} is not streaming ({n.answered().receiver_status or 'no WAL receiver'}): "
                       f"fix replication first (dcctl check)")
    if o.node and n.node and n.role is Role.STANDBY:
        if o.node.timeline != n.node.timeline:
            reasons.append(f"standby {new} is on timeline {n.node.timeline}, primary {old} on {o.node.timeline}")
        lag = replay_lag_bytes(o.node.current_lsn, n.node.replay_lsn)
        limit = service.operation.max_lag_bytes
        if lag is not None and lag > limit:
            reasons.append(f"standby {new} is {human_bytes(lag)} behind (operation.max_lag_bytes is "
                           f"{human_bytes(limit)}): wait for it to catch up")
        if n.node.replay_paused:
            reasons.append(f"replay is paused on {new}: SELECT pg_wal_replay_resume() there first")
        silence = receiver_silence(n.node, service.operation.max_receipt_age) if check_receipt else None
        if silence:
            reasons.append(f"standby {new}: {silence}")
    for site in (o, n):
        if site.node:
            for problem in readiness_problems(site.node.settings):
                if "pg_rewind" in problem:
                    reasons.append(f"{site.site}: {problem}")
    return reasons + volume_refusals(view, (old, new), min_free_ratio)


def volume_refusals(view: ServiceView, sites: tuple[str, ...], min_free_ratio: float) -> list[str]:
    """A full volume stops a switchover half-way: the receiving file store fails the final sync
    after the primary has stopped, a full WAL volume stops the standby's replay. Refuse first."""
    reasons = []
    for name in sites:
        for disk in view.site(name).disks:
            ratio = disk.free_ratio
            if ratio is not None and ratio < min_free_ratio:
                reasons.append(f"site {name}: volume {disk.label} ({disk.path}) has {ratio:.1%} free, under "
                               f"thresholds.disk_free_crit_ratio ({min_free_ratio:.0%}): free space there first")
    return reasons


def receiver_silence(node, limit: float) -> str | None:
    """Why the standby's WAL receiver looks hung, or None. A receiver that does not answer holds the
    old primary's fast shutdown (its walsender waits for the shutdown checkpoint to be confirmed,
    up to wal_sender_timeout), and then the replay."""
    if not limit or node.receipt_age is None or node.receipt_age <= limit:
        return None
    return (f"its WAL receiver last heard from the primary {node.receipt_age:.1f} s ago (operation.max_receipt_age "
            f"is {limit:g} s): it may be hung, and the switchover would wait on it; see pg_stat_wal_receiver "
            f"(its pid) and the standby's log, or restart the standby")


def failover_refusals(view: ServiceView, old: str | None, new: str | None, *, fence_command: str | None,
                      primary_is_down: bool) -> list[str]:
    if old is None or new is None:
        return ["cannot tell which site to promote: " + _roles(view) + "; name it with --to SITE"]
    reasons = []
    o, n = view.site(old), view.site(new)
    if n.role is not Role.STANDBY:
        reasons.append(f"site {new} is not a running standby ({n.postgres_error or n.role.value}): there is "
                       f"nothing to promote")
    if not o.reachable and not fence_command and not primary_is_down:
        reasons.append(f"site {old} is unreachable ({o.transport_error}) and has no fence_command: dcctl cannot "
                       f"stop it; if you know it is down, say so with --primary-is-down")
    return reasons


def rejoin_refusals(view: ServiceView, node_site: str, primary_site: str | None) -> list[str]:
    if primary_site is None:
        return [f"no other site runs a primary for {node_site} to follow: {_roles(view)}"]
    reasons = []
    p, s = view.site(primary_site), view.site(node_site)
    if not s.reachable:
        reasons.append(f"site {node_site} is unreachable: {s.transport_error}")
    if p.role is not Role.PRIMARY:
        reasons.append(f"site {primary_site} is not a running primary ({p.postgres_error or p.role.value})")
    return reasons


def _roles(view: ServiceView) -> str:
    return "; ".join(f"{s.site}: {s.role.value}" + (f" ({s.postgres_error})" if s.postgres_error else "")
                     for s in view.sites)
