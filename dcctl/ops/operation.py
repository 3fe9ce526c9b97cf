"""One path for every operation, from the command line to the report:

    one ServiceView -> a Plan (its steps, concretely, and every reason to refuse)
      -> --dry-run prints it and stops -> refused before any confirmation -> confirmed
      -> Runner (lock, journal, steps, rollback or halt) -> report.

The CLI only parses options, asks, and prints. `resume` comes through here too: it re-observes
the world before it acts (ops/resume.py). The snapshot is taken once: the preflight step reuses it
while it is fresh (OpContext.current_view), so nothing is gathered twice before a promotion.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any, Callable

from dcctl.config.schema import Config, ServiceConfig
from dcctl.errors import RefusedError
from dcctl.model import ServiceView
from dcctl.ops.engine import Action, OpContext, PlannedStep, Runner, plan_steps
from dcctl.ops.journal import Journal, JournalState, new_operation_id
from dcctl.ops.playbook import Playbook, load_playbook
from dcctl.ops.report import OperationReport
from dcctl.ops.preflight import (choose_roles, failover_refusals, needs_volumes, rejoin_refusals,
                                 switchover_refusals)

KINDS = ("switchover", "failover", "rejoin", "drill")


def playbook_name(kind: str, args: dict[str, Any]) -> str:
    """The playbook an operation runs: a full drill is its own composite playbook."""
    return "drill_full" if kind == "drill" and args.get("mode") == "full" else kind


def actions_for(kind: str, args: dict[str, Any]) -> dict[str, Action]:
    """The built-in steps an operation may use, by playbook (imported on demand: a failover at
    3 a.m. does not pay for the rejoin's and the drill's modules)."""
    name = playbook_name(kind, args)
    if name == "switchover":
        from dcctl.ops.steps.switchover import SWITCHOVER
        return SWITCHOVER
    if name == "failover":
        from dcctl.ops.steps.failover import FAILOVER
        return FAILOVER
    if name == "rejoin":
        from dcctl.ops.steps.rejoin import REJOIN
        return REJOIN
    if name == "drill":
        from dcctl.ops.steps.drill import DRILL
        return DRILL
    if name == "drill_full":
        from dcctl.ops.steps.drill_full import DRILL_FULL
        return DRILL_FULL
    raise ValueError(f"unknown operation kind {kind!r}")


@dataclass
class Plan:
    """An operation ready to run, or to be shown by --dry-run."""

    ctx: OpContext
    playbook: Playbook
    actions: dict[str, Action]
    steps: list[PlannedStep]
    refusals: list[str] = field(default_factory=list)

    @property
    def headline(self) -> str:
        ctx = self.ctx
        if ctx.kind == "rejoin":
            return f"rejoin of service {ctx.service_name}: {ctx.rejoining} follows {ctx.new_primary}"
        if ctx.kind == "drill" and ctx.args.get("mode") != "full":
            return f"non-disruptive drill of service {ctx.service_name} at {ctx.drill_site}"
        return f"{ctx.kind} of service {ctx.service_name}: {ctx.old_primary} -> {ctx.new_primary}"

    def refuse_if_needed(self, *, break_lock: bool = False) -> None:
        """Before any confirmation: another operation's lock first, then every refusal at once."""
        from dcctl.ops.lock import LockOwner, ServiceLock

        ctx = self.ctx
        owner = LockOwner(ctx.op_id, socket.gethostname(), os.getpid(), time.time())
        locked = ServiceLock(ctx.config.state_dir, ctx.service_name, {}).refusal_here(owner, break_stale=break_lock)
        if locked is not None:
            raise locked
        if self.refusals:
            raise RefusedError(f"{self.ctx.kind} refused:\n  - " + "\n  - ".join(self.refusals),
                               hint="nothing was changed; `dcctl check` shows the state of both sites")


@dataclass(frozen=True)
class Outcome:
    outcome: str  # success | rolled_back | failed
    report: OperationReport
    journal: Journal


def plan(config: Config, kind: str, service_name: str | None, *, args: dict[str, Any] | None = None,
         to_site: str | None = None, site: str | None = None, say: Callable[[str], None] = lambda text: None,
         view: ServiceView | None = None, connections: dict | None = None) -> Plan:
    """Take one snapshot (unless given, with the connections it left open) and plan the operation
    on it; the operation goes on with the snapshot's connections."""
    from dcctl.topology import gather_view

    args = dict(args or {})
    name, service = config.service(service_name)
    for given in (to_site, site):
        if given is not None:
            service.site(given, name)  # a typo is a usage error before any site is asked
    if view is None:
        connections = {}
        view = gather_view(config, name, service, with_disks=needs_volumes(kind, args), keep_connections=connections,
                           purpose=kind)
    # Its age counts from the end of the gather: the sites that answered did so at once, and one
    # that did not (a lost site, after site_timeout) must not make preflight ask all over again.
    taken = time.monotonic()
    old, new, refusals = roles(kind, view, service, args, to_site=to_site, site=site)
    ctx = OpContext(op_id=new_operation_id(kind), kind=kind, config=config, service_name=name, service=service,
                    old_primary=old, new_primary=new, args=args, journal=None, say=say,  # type: ignore[arg-type]
                    view=view, view_taken=taken)
    ctx.adopt_connections(connections or {})
    ctx.nested = _nested_runner(config, name, ctx)
    ctx.finish_part = _part_finisher(config, ctx)
    playbook = load_playbook(playbook_name(kind, args), config.playbooks_dir)
    actions = actions_for(kind, args)
    if not refusals:
        refusals = refusals_for(kind, view, service, old, new, args,
                                min_free_ratio=service.thresholds.disk_free_crit_ratio)
    return Plan(ctx, playbook, actions, plan_steps(ctx, playbook, actions), refusals)


def roles(kind: str, view: ServiceView, service: ServiceConfig, args: dict[str, Any], *, to_site: str | None,
          site: str | None) -> tuple[str, str, list[str]]:
    """(old_primary, new_primary, refusals) as the journal header names them (see OpContext)."""
    names = list(service.sites)
    if kind == "rejoin":
        assert site is not None
        return site, next(n for n in names if n != site), []
    old, new = choose_roles(view, to_site)
    if old is None or new is None:
        fallback_old, fallback_new = names[0], names[1]
        return fallback_old, fallback_new, ["cannot tell which site is the primary; name the target with --to SITE"]
    if kind == "drill" and args.get("mode") != "full":
        drill_site = service.drill.site or new
        if drill_site not in names:
            return old, new, [f"drill.site {drill_site!r} is not a site of {view.service}; sites: {', '.join(names)}"]
        return old, drill_site, []
    return old, new, []


def refusals_for(kind: str, view: ServiceView, service: ServiceConfig, old: str, new: str,
                 args: dict[str, Any], *, min_free_ratio: float = 0.0) -> list[str]:
    """Every reason to refuse that one snapshot shows (pure); the preflight step checks the same
    again, on the same snapshot while it is fresh, and adds what needs a site's files."""
    if needs_volumes(kind, args):
        return switchover_refusals(view, service, old, new, check_receipt=False,  # preflight nudges, then checks
                                   min_free_ratio=min_free_ratio)
    if kind == "failover":
        return failover_refusals(view, old, new, fence_command=service.sites[old].fence_command,
                                 primary_is_down=bool(args.get("primary_is_down")))
    if kind == "rejoin":
        return rejoin_refusals(view, old, new)
    return []


def run(plan_: Plan, *, break_lock: bool = False) -> Outcome:
    """Journal, run, report: the confirmed plan, start to end."""
    ctx = plan_.ctx
    ctx.journal = Journal.create(ctx.config.state_dir, ctx.op_id, {
        "kind": ctx.kind, "service": ctx.service_name, "old_primary": ctx.old_primary,
        "new_primary": ctx.new_primary, "args": ctx.args, "playbook": plan_.playbook.source})
    return _run(plan_, None, break_lock)


def resume(config: Config, journal: Journal, state: JournalState, *, break_lock: bool = False,
           say: Callable[[str], None] = lambda text: None) -> Outcome:
    """Finish (or roll back) an interrupted operation, after checking the world still fits it."""
    from dcctl.ops.resume import refuse_if_superseded

    header = state.header
    name, service = config.service(header["service"])
    args = header.get("args", {})
    ctx = OpContext(op_id=header["op"], kind=header["kind"], config=config, service_name=name, service=service,
                    old_primary=header["old_primary"], new_primary=header["new_primary"], args=args,
                    journal=journal, say=say)
    ctx.view, ctx.view_taken = refuse_if_superseded(config, journal, state), time.monotonic()
    ctx.nested = _nested_runner(config, name, ctx)
    ctx.finish_part = _part_finisher(config, ctx)
    journal.append("resume", pid=os.getpid())
    playbook = load_playbook(playbook_name(ctx.kind, args), config.playbooks_dir)
    actions = actions_for(ctx.kind, args)
    return _run(Plan(ctx, playbook, actions, []), state, break_lock)


def _nested_runner(config: Config, service_name: str,
                   parent: OpContext) -> Callable[..., tuple[str, Mapping[str, Any], str]]:
    """How a composite operation runs one of its parts: a whole operation of its own (planned on
    the snapshot the composite just took, refusals, journal, lock, report). The part's id goes
    into the composite's journal before it starts: what the part records (a new generation) is
    the composite's own doing when the composite is resumed."""
    def run_part(kind: str, target: str, args: dict[str, Any], say: Callable[[str], None],
                 view: ServiceView | None = None) -> tuple[str, Mapping[str, Any], str]:
        part = plan(config, kind, service_name, to_site=target, args=args, say=say, view=view)
        part.refuse_if_needed()
        say(f"{kind} {part.ctx.op_id}: {part.ctx.old_primary} -> {part.ctx.new_primary}")
        parent.journal.append("part", op=part.ctx.op_id, kind=kind)
        done = run(part)
        return done.outcome, done.report, part.ctx.op_id
    return run_part


def _part_finisher(config: Config, parent: OpContext):
    """ctx.finish_part: the composite was stopped while its part ran; that part is finished (or
    rolled back) first, never left behind holding its lock while another one is planned."""
    def finish_part(kind: str, say: Callable[[str], None]) -> tuple[str, Mapping[str, Any], str, str] | None:
        unfinished = _unfinished_part(config, parent.journal, kind)
        if unfinished is None:
            return None
        journal, state = unfinished
        say(f"{kind} {state.header['op']}: resumed (it was stopped with the {parent.kind} it belongs to)")
        done = resume(config, journal, state, say=say)
        return done.outcome, done.report, state.header["op"], state.header["new_primary"]
    return finish_part


def _unfinished_part(config: Config, parent: Journal, kind: str) -> tuple[Journal, JournalState] | None:
    """The composite's last part, if it is of this kind and its journal has no end."""
    parts = [entry for entry in parent.entries() if entry.get("event") == "part"]
    if not parts or parts[-1].get("kind") != kind:
        return None
    journal = Journal.open(config.state_dir, parts[-1]["op"])
    if not journal.path.exists():
        return None  # it died before its journal was created: nothing of it ran
    state = journal.state()
    return None if state.finished else (journal, state)


def _run(plan_: Plan, resume_state: JournalState | None, break_lock: bool) -> Outcome:
    from dcctl.ops.report import build_report, write_report

    ctx = plan_.ctx
    takes_lock = playbook_name(ctx.kind, ctx.args) != "drill_full"
    try:
        outcome = Runner(ctx, plan_.playbook, plan_.actions, takes_lock=takes_lock).run(
            resume_state=resume_state, break_lock=break_lock)
    finally:
        report = build_report(ctx.journal.entries())
        _json_path, human_path = write_report(ctx.journal, report)
        ctx.say(f"report: {human_path}")
    return Outcome(outcome, report, ctx.journal)
