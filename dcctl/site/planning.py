"""Plan a site operation: one snapshot per service, all taken at once, then each service planned
by the single-service planner on its snapshot (ops/operation.plan), in the groups of the
recovery plan. Nothing here changes anything: --dry-run stops after it."""
from __future__ import annotations

import functools
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from dcctl.config.schema import Config, RecoveryGroup
from dcctl.errors import DcctlError, RefusedError, UnreachableError
from dcctl.model import ServiceView
from dcctl.ops.operation import Plan, plan
from dcctl.site.decide import already_there, site_operation_id

Say = Callable[[str], None]


@dataclass
class ServicePart:
    """One service's share of a site operation: its plan, or why it has none."""

    service: str
    group: int
    plan: Plan | None = None
    skipped: str | None = None  # already where the operation takes it
    error: str | None = None  # could not be planned (no snapshot, a site it lacks)

    @property
    def refusals(self) -> list[str]:
        if self.error:
            return [self.error]
        return list(self.plan.refusals) if self.plan else []

    @property
    def op_id(self) -> str | None:
        return self.plan.ctx.op_id if self.plan else None


@dataclass
class SitePlan:
    op_id: str
    kind: str
    config: Config
    target: str | None  # the site the services move to (rejoin: the site rejoined; drill: none)
    args: dict[str, Any]
    groups: list[RecoveryGroup]
    parts: dict[str, ServicePart]
    lock_refusals: list[str] = field(default_factory=list)

    @property
    def headline(self) -> str:
        services = sum(len(group.services) for group in self.groups)
        what = {"switchover": f"switchover to {self.target}", "failover": f"failover to {self.target}",
                "rejoin": f"rejoin of {self.target}", "drill": f"drill ({self.args.get('mode') or 'non-disruptive'})"}
        return f"site {what[self.kind]}: {services} service(s) in {len(self.groups)} group(s)"

    def group_parts(self, index: int) -> list[ServicePart]:
        return [self.parts[name] for name in self.groups[index].services]

    def refusals(self) -> list[str]:
        """Every reason to refuse, of every service at once, each naming its service."""
        reasons = list(self.lock_refusals)
        for group in self.groups:
            for name in group.services:
                reasons += [f"{name}: {reason}" for reason in self.parts[name].refusals]
        return reasons

    def header(self) -> dict[str, Any]:
        """What the site journal's header records of the plan."""
        return {"kind": f"site-{self.kind}", "old_primary": None, "new_primary": self.target, "args": self.args,
                "groups": [{"services": list(g.services), "on_failure": g.on_failure} for g in self.groups],
                "site_operation": True}

    def summary(self) -> dict[str, Any]:
        """Each service's part, as the `plan` entry of the journal and `--dry-run -o json` show it."""
        shown: dict[str, Any] = {}
        for name, part in self.parts.items():
            entry: dict[str, Any] = {"group": part.group, "operation": part.op_id, "skipped": part.skipped,
                                     "refusals": part.refusals}
            if part.plan:
                entry["headline"] = part.plan.headline
                entry["steps"] = [{"step": s.label, "site": s.site, "describe": s.describe, "command": s.command,
                                   "irreversible": s.irreversible} for s in part.plan.steps]
            shown[name] = entry
        return shown


def gather_views(config: Config, kind: str, args: dict[str, Any],
                 connections: dict[str, dict] | None = None) -> dict[str, ServiceView | DcctlError]:
    """One snapshot per service, every service asked at once (each bounded as `status` is), with
    the sites' free space when the operation's preflight needs it. connections: receives, by
    service, the connections each snapshot left open for its operation."""
    from dcctl.ops.preflight import needs_volumes
    from dcctl.parallel import run_all
    from dcctl.topology import gather_view

    disks = needs_volumes(kind, args)
    if connections is not None:
        connections.update({name: {} for name in config.services})
    calls: dict[Any, Callable[[], Any]] = {
        name: functools.partial(gather_view, config, name, service, with_disks=disks, purpose=kind,
                                keep_connections=None if connections is None else connections[name])
        for name, service in config.services.items()}
    outcomes = run_all(calls, deadline=2 * config.site_timeout + 5)
    views: dict[str, ServiceView | DcctlError] = {}
    for name in config.services:
        outcome = outcomes[name]
        if outcome.ok:
            views[name] = outcome.value
        elif outcome.timed_out:
            views[name] = UnreachableError(f"no snapshot within {2 * config.site_timeout + 5:g} s")
        else:
            error = outcome.error
            views[name] = error if isinstance(error, DcctlError) else DcctlError(f"{type(error).__name__}: {error}")
    return views


def gather_one(config: Config, name: str, kind: str, args: dict[str, Any]) -> ServiceView | DcctlError:
    """A fresh snapshot of one service (a group planned again on resume), or why there is none."""
    from dcctl.ops.preflight import needs_volumes
    from dcctl.topology import gather_view

    try:
        return gather_view(config, name, config.services[name], with_disks=needs_volumes(kind, args))
    except DcctlError as exc:
        return exc


def plan_site(config: Config, kind: str, views: dict[str, ServiceView | DcctlError], *, target: str | None,
              args: dict[str, Any] | None = None, say: Say = lambda text: None, op_id: str | None = None,
              connections: dict[str, dict] | None = None) -> SitePlan:
    """Plan every service of the recovery plan on its snapshot (pure but for reading playbooks);
    each service's operation goes on with the connections its snapshot left open, if given."""
    args = dict(args or {})
    op_id = op_id or site_operation_id(kind)
    groups = config.recovery_groups()
    printer = SerialSay(say)
    parts = {}
    for index, group in enumerate(groups):
        for name in group.services:
            parts[name] = plan_service(config, kind, name, index, views.get(name), target=target,
                                       args={**args, "site_operation": op_id}, say=printer.prefixed(name),
                                       connections=(connections or {}).get(name))
    return SitePlan(op_id, kind, config, target, args, groups, parts)


def plan_service(config: Config, kind: str, name: str, group: int, view: ServiceView | DcctlError | None, *,
                 target: str | None, args: dict[str, Any], say: Say, connections: dict | None = None) -> ServicePart:
    if view is None:
        return ServicePart(name, group, error="no snapshot was taken")
    if isinstance(view, DcctlError):
        return ServicePart(name, group, error=f"no snapshot: {view.message}")
    if target is not None and target not in config.services[name].sites:
        return ServicePart(name, group, error=f"has no site named {target!r} (its sites: "
                                              f"{', '.join(config.services[name].sites)})")
    if target is not None:
        skipped = already_there(kind, view, target, args)
        if skipped:
            return ServicePart(name, group, skipped=skipped)
    where = {"site": target} if kind == "rejoin" else {"to_site": target} if kind != "drill" else {}
    try:
        planned = plan(config, kind, name, args=args, say=say, view=view, connections=connections, **where)
    except DcctlError as exc:
        return ServicePart(name, group, error=exc.message)
    return ServicePart(name, group, plan=planned)


def lock_refusals(site_plan: SitePlan, *, break_lock: bool = False) -> list[str]:
    """Locks held by other operations where dcctl runs: the site lock, then each service's."""
    from dcctl.ops.lock import LockOwner, ServiceLock
    from dcctl.site.lock import SiteLock

    reasons = []
    owner = LockOwner(site_plan.op_id, socket.gethostname(), os.getpid(), time.time())
    held = SiteLock(site_plan.config.state_dir).refusal_here(owner, break_stale=break_lock)
    if held is not None:
        reasons.append(held.message)
    for name, part in site_plan.parts.items():
        if part.plan is None:
            continue
        me = LockOwner(part.plan.ctx.op_id, owner.host, owner.pid, owner.started)
        locked = ServiceLock(site_plan.config.state_dir, name, {}).refusal_here(me, break_stale=break_lock)
        if locked is not None:
            reasons.append(f"{name}: {locked.message}")
    return reasons


def refuse_if_needed(site_plan: SitePlan, *, break_lock: bool = False) -> None:
    """Before any confirmation: every lock and every refusal of every service, at once."""
    site_plan.lock_refusals = lock_refusals(site_plan, break_lock=break_lock)
    reasons = site_plan.refusals()
    if reasons:
        raise RefusedError(f"site {site_plan.kind} refused:\n  - " + "\n  - ".join(reasons),
                           hint="nothing was changed; `dcctl check` shows the state of every service")


class SerialSay:
    """One `say` shared by services running at once: each line whole, prefixed with its service."""

    _lock = threading.Lock()  # one for every SerialSay: they all write to the same stderr

    def __init__(self, say: Say):
        self.say = say

    def prefixed(self, name: str) -> Say:
        def say(text: str) -> None:
            with self._lock:
                self.say("\n".join(f"[{name}] {line}" for line in text.splitlines() or [""]))
        return say
