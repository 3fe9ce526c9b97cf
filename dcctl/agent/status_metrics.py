"""A status snapshot -> the metric samples and the log events of one agent (pure)."""
from __future__ import annotations

from dataclasses import dataclass

from dcctl.agent.metrics import Sample, sample
from dcctl.checks.result import CheckResult, Status
from dcctl.model import Role, ServiceView
from dcctl.pg.lsn import parse_lsn
from dcctl.status_report import site_status


@dataclass(frozen=True)
class StatusSnapshot:
    """One collection: both sites as this agent saw them, and every check result."""

    view: ServiceView
    results: tuple[CheckResult, ...]


def worst_by_name(results: tuple[CheckResult, ...] | list[CheckResult]) -> dict[str, CheckResult]:
    """The worst result of each result name (CRIT > WARN > UNKNOWN > OK), first one on a tie."""
    worst: dict[str, CheckResult] = {}
    for result in results:
        current = worst.get(result.name)
        if current is None or result.status.severity > current.status.severity:
            worst[result.name] = result
    return worst


def status_samples(snapshot: StatusSnapshot, site: str) -> list[Sample]:
    view = snapshot.view
    service = view.service
    own = view.site(site)
    primaries = view.primaries()
    primary = primaries[0] if len(primaries) == 1 else None
    node = own.node
    entry = site_status(own, primary)
    here = {"service": service, "site": site}

    out = [
        sample("dcctl_site_info", 1, **here, role=own.role.value),
        sample("dcctl_pg_up", own.postgres_up, **here),
        sample("dcctl_service_primaries", len(primaries), service=service),
    ]
    for peer in view.sites:
        if peer.site != site:
            out.append(sample("dcctl_peer_up", bool(peer.reachable), service=service, site=peer.site,
                              target="transport"))
            out.append(sample("dcctl_peer_up", peer.postgres_up, service=service, site=peer.site, target="postgres"))
    for disk in own.disks:
        if disk.total_bytes is not None and disk.free_bytes is not None:
            out.append(sample("dcctl_volume_size_bytes", disk.total_bytes, **here, volume=disk.label))
            out.append(sample("dcctl_volume_avail_bytes", disk.free_bytes, **here, volume=disk.label))
    if node is not None:
        out.append(sample("dcctl_pg_server_version", node.server_version, **here))
        out.append(sample("dcctl_pg_in_recovery", node.in_recovery, **here))
        if node.timeline is not None:
            out.append(sample("dcctl_pg_timeline", node.timeline, **here))
        for name, lsn in (("dcctl_pg_current_lsn_bytes", node.current_lsn),
                          ("dcctl_pg_receive_lsn_bytes", node.receive_lsn),
                          ("dcctl_pg_replay_lsn_bytes", node.replay_lsn)):
            if lsn is not None:
                out.append(sample(name, parse_lsn(lsn), **here))
        if own.role is Role.PRIMARY:
            for slot in node.slots:
                out.append(sample("dcctl_replication_slot_active", slot.active, **here, slot=slot.name))
                out.append(sample("dcctl_replication_slot_retained_bytes", slot.retained_bytes or 0, **here,
                                  slot=slot.name))
        else:
            out.append(sample("dcctl_pg_replay_paused", node.replay_paused, **here))
            out.append(sample("dcctl_replication_streaming", bool(entry["streaming"]), **here))
            if entry["lag"]["bytes"] is not None:
                out.append(sample("dcctl_replication_lag_bytes", entry["lag"]["bytes"], **here))
            if entry["lag"]["seconds"] is not None:
                out.append(sample("dcctl_replication_lag_seconds", entry["lag"]["seconds"], **here))
    for name, result in sorted(worst_by_name(snapshot.results).items()):
        out.append(sample("dcctl_check_status", int(result.status), service=service, check=name))
    return out


def status_changes(old: StatusSnapshot | None, new: StatusSnapshot, site: str) -> list[str]:
    """One sentence per change worth a log line: this site's role, and each check's status.

    >>> from datetime import datetime, timezone
    >>> from dcctl.model import SiteStatus
    >>> down = SiteStatus("rabat", "local", True, None, "127.0.0.1:5432", None, "connection refused")
    >>> view = ServiceView("massar", (down,), datetime.now(timezone.utc))
    >>> crit = CheckResult("postgres_up", Status.CRIT, "connection refused", "rabat")
    >>> status_changes(None, StatusSnapshot(view, (crit,)), "rabat")
    ['massar: first collection: rabat is unknown; checks: 1 CRIT (postgres_up)']
    >>> ok = CheckResult("postgres_up", Status.OK, "PostgreSQL at 127.0.0.1:5432 answers (primary)", "rabat")
    >>> status_changes(StatusSnapshot(view, (ok,)), StatusSnapshot(view, (crit,)), "rabat")
    ['massar: check postgres_up OK -> CRIT: connection refused']
    """
    service = new.view.service
    role = new.view.site(site).role.value
    now = worst_by_name(new.results)
    if old is None:
        counts: dict[Status, list[str]] = {}
        for name, result in now.items():
            counts.setdefault(result.status, []).append(name)
        parts = [f"{len(names)} {status.name}" + (f" ({', '.join(sorted(names))})" if status is not Status.OK else "")
                 for status, names in sorted(counts.items(), key=lambda item: -item[0].severity)]
        return [f"{service}: first collection: {site} is {role}; checks: {', '.join(parts) or 'none'}"]
    events = []
    old_role = old.view.site(site).role.value
    if old_role != role:
        events.append(f"{service}: {site} is now {role} (was {old_role})")
    before = worst_by_name(old.results)
    for name, result in now.items():
        previous = before.get(name)
        if previous is None or previous.status is not result.status:
            was = previous.status.name if previous else "absent"
            events.append(f"{service}: check {name} {was} -> {result.status.name}: {result.detail}")
    for name in sorted(set(before) - set(now)):
        events.append(f"{service}: check {name} no longer applies (was {before[name].status.name})")
    return events

