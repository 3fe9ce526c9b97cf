"""Run a site operation: the site lock, the site journal, the groups in order and the services
of a group at once (threads), each service a whole operation of its own (its lock, journal and
report: ops/operation.run). `resume` finishes an interrupted one from its journal.

Between groups: a service that rolled back stops the plan (unless its group says on_failure:
continue); one that stopped past its point of no return always does, and `dcctl resume SITEOP`
drives it forward before the next group starts. Services already moved stay moved.
"""
from __future__ import annotations

import functools
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from dcctl.config.schema import Config
from dcctl.errors import DcctlError, Interrupted
from dcctl.ops.journal import Journal
from dcctl.ops.lock import LockOwner
from dcctl.site.decide import SITE_SERVICE, SiteState, final_outcome, group_outcome, stop_reason
from dcctl.site.lock import SiteLock
from dcctl.site.planning import SerialSay, ServicePart, SitePlan, plan_service
from dcctl.site.records import site_report, write_site_report

Say = Callable[[str], None]
REPLAN_PATIENCE = 30.0  # seconds a service rolled back by resume may take to be ready to move again


@dataclass(frozen=True)
class ServiceResult:
    service: str
    operation: str | None
    outcome: str  # skipped | success | rolled_back | failed | halted | refused | superseded | unfinished
    error: str | None = None


@dataclass(frozen=True)
class SiteOutcome:
    outcome: str  # success | partial | stopped | halted
    report: dict[str, Any]
    journal: Journal
    reason: str | None = None
    hint: str | None = None


class SiteRun:
    """The running site operation: its journal, its lock, the one `say` its services share."""

    def __init__(self, config: Config, journal: Journal, op_id: str, kind: str, target: str | None,
                 args: dict[str, Any], groups: list[dict[str, Any]], say: Say):
        self.config = config
        self.journal = journal
        self.op_id = op_id
        self.kind = kind
        self.target = target
        self.args = args
        self.groups = groups
        self.say = say
        self.printer = SerialSay(say)
        self.lock = SiteLock(config.state_dir)
        self.owner = LockOwner(op_id, socket.gethostname(), os.getpid(), time.time())
        self.interrupted = False
        self._recording = threading.RLock()  # services of a group record at once (RLock: Ctrl-C's handler too)

    def record(self, event: str, **data: Any) -> None:
        with self._recording:
            self.journal.append(event, **data)

    # ---- one service -------------------------------------------------------------------------

    def run_part(self, part: ServicePart) -> ServiceResult:
        """A planned service: its whole operation, recorded in the site journal at start and end."""
        from dcctl.ops import operation

        if part.skipped:
            self.record("service_skipped", group=part.group, service=part.service, reason=part.skipped)
            return ServiceResult(part.service, None, "skipped", part.skipped)
        if part.plan is None:
            return self._end(part.group, ServiceResult(part.service, None, "refused", part.error))
        op_id = part.plan.ctx.op_id
        self.record("service_start", group=part.group, service=part.service, operation=op_id)
        error, outcome = None, None
        try:
            part.plan.refuse_if_needed()
            outcome = operation.run(part.plan).report["outcome"]
        except DcctlError as exc:
            error = exc.message
        except Exception as exc:  # a bug in one service must not leave the others unrecorded
            error = f"{type(exc).__name__}: {exc}"
        return self._end(part.group, ServiceResult(part.service, op_id, outcome or child_outcome(self.config, op_id),
                                                   error))

    def resume_part(self, group: int, service: str, op_id: str) -> ServiceResult:
        """A service whose operation was cut off: resume it (ops/operation.resume). One that had
        not passed its point of no return is rolled back by that resume, then planned again."""
        from dcctl.ops import operation

        journal = Journal.open(self.config.state_dir, op_id)
        error = None
        try:
            operation.resume(self.config, journal, journal.state(), say=self.printer.prefixed(service))
        except DcctlError as exc:
            error = exc.message
        outcome = child_outcome(self.config, op_id)
        if outcome == "rolled_back":
            return self.fresh_part(group, service, patience=REPLAN_PATIENCE)
        return self._end(group, ServiceResult(service, op_id, outcome, error))

    def fresh_part(self, group: int, service: str, patience: float = 0.0) -> ServiceResult:
        """A service of a group not yet (or not wholly) run: a new snapshot, a new plan, run.
        patience: seconds to keep planning while it is refused (its standby reconnecting to the
        primary a rollback has just restarted)."""
        from dcctl.site.planning import gather_one

        say = self.printer.prefixed(service)
        deadline = time.monotonic() + patience
        while True:
            view = gather_one(self.config, service, self.kind, self.args)
            part = plan_service(self.config, self.kind, service, group, view, target=self.target,
                                args={**self.args, "site_operation": self.op_id}, say=say)
            if part.plan is None or not part.plan.refusals:
                return self.run_part(part)
            if time.monotonic() >= deadline:
                return self.run_part(ServicePart(service, group, error="; ".join(part.plan.refusals)))
            time.sleep(0.5)

    def _end(self, group: int, result: ServiceResult) -> ServiceResult:
        self.record("service_end", group=group, service=result.service, operation=result.operation,
                            outcome=result.outcome, error=result.error)
        self.printer.prefixed(result.service)(f"{result.outcome}" + (f": {result.error}" if result.error else ""))
        return result

    # ---- the groups --------------------------------------------------------------------------

    def drive(self, first: int, tasks: Callable[[int], dict[str, Callable[[], ServiceResult]]]) -> SiteOutcome:
        """Runs the groups from `first` on; returns the outcome (the report is written either way)."""
        try:
            with SiteCtrlC(self):
                return self._groups(first, tasks)
        except KeyboardInterrupt:
            self.record("halt", reason="interrupted by a second Ctrl-C")
            raise Interrupted(f"site {self.kind} {self.op_id} stopped by a second Ctrl-C while services were "
                              f"moving", hint=f"`dcctl resume {self.op_id}` finishes every service it left "
                                          f"(`dcctl status` shows where each one is now)") from None
        finally:
            self.write_report()

    def _groups(self, first: int, tasks: Callable[[int], dict[str, Callable[[], ServiceResult]]]) -> SiteOutcome:
        for index in range(first, len(self.groups)):
            group = self.groups[index]
            self.say(f"group {index + 1}/{len(self.groups)}: {', '.join(group['services'])}")
            self.record("group_start", group=index, services=group["services"])
            started = time.monotonic()
            results = run_at_once(tasks(index))
            outcomes = {name: result.outcome for name, result in results.items()}
            ended = group_outcome(group.get("on_failure", "stop"), outcomes)
            self.record("group_end", group=index, outcome=ended, seconds=round(time.monotonic() - started, 4))
            reason = stop_reason(index, group.get("on_failure", "stop"), outcomes)
            if ended == "halted":
                return self._halt(reason)
            if self.interrupted and (reason or index + 1 < len(self.groups)):
                self._finish("stopped", reason or f"interrupted by Ctrl-C after group {index + 1}")
                raise Interrupted(f"site {self.kind} {self.op_id} stopped after group {index + 1} (Ctrl-C)",
                                  hint=f"services already moved stay moved; run the site {self.kind} again to move "
                                       f"the rest (the services already there are skipped)")
            if reason:
                return self._finish("stopped", reason)
        state = SiteState.read(self.journal.entries())
        return self._finish(final_outcome(list(state.groups_ended.values())), None)

    def _halt(self, reason: str | None) -> SiteOutcome:
        """A service stopped past its point of no return: the site operation stays open (and
        locked) for `dcctl resume`, which drives it forward before any further group starts."""
        self.record("halt", reason=reason)
        hint = (f"fix the cause, then `dcctl resume {self.op_id}` drives every unfinished service forward and runs "
                f"the groups left")
        if self.interrupted:
            raise Interrupted(f"site {self.kind} {self.op_id} stopped (Ctrl-C): {reason}", hint=hint)
        return self._outcome("halted", reason, hint)

    def _finish(self, outcome: str, reason: str | None) -> SiteOutcome:
        rto = site_report(self.config.state_dir, self.journal)["site_rto_seconds"]
        self.record("finish", outcome=outcome, reason=reason, rto_seconds=rto)
        self.lock.release(self.owner)
        hint = None
        if outcome != "success":
            hint = (f"services already moved stay moved (`dcctl history` and the report say which is where); fix "
                    f"the cause and run the site {self.kind} again: the services already there are skipped")
        return self._outcome(outcome, reason, hint)

    def _outcome(self, outcome: str, reason: str | None, hint: str | None) -> SiteOutcome:
        return SiteOutcome(outcome, site_report(self.config.state_dir, self.journal), self.journal, reason, hint)

    def write_report(self) -> None:
        self.say(f"site report: {write_site_report(self.config, self.journal)[1]}")

    def take_lock(self, break_lock: bool) -> None:
        self.lock.acquire(self.owner, break_stale=break_lock, say=self.say)
        self.record("lock", owner=self.owner.__dict__)


def run(site_plan: SitePlan, *, break_lock: bool = False, say: Say = lambda text: None) -> SiteOutcome:
    """The confirmed site plan, start to end."""
    header = {**site_plan.header(), "service": SITE_SERVICE}
    journal = Journal.create(site_plan.config.state_dir, site_plan.op_id, header)
    runner = SiteRun(site_plan.config, journal, site_plan.op_id, site_plan.kind, site_plan.target, site_plan.args,
                     header["groups"], say)
    try:
        runner.take_lock(break_lock)
    except DcctlError as exc:
        journal.append("finish", outcome="refused", reason=exc.message)
        raise
    runner.record("plan", services=site_plan.summary())

    def tasks(index: int) -> dict[str, Callable[[], ServiceResult]]:
        return {part.service: functools.partial(runner.run_part, part) for part in site_plan.group_parts(index)}

    return runner.drive(0, tasks)


def resume(config: Config, journal: Journal, *, break_lock: bool = False, say: Say = lambda text: None) -> SiteOutcome:
    """Finish an interrupted site operation: each unfinished service's operation resumed, the
    services and groups not yet run planned on fresh snapshots and run."""
    state = SiteState.read(journal.entries())
    header = state.header
    runner = SiteRun(config, journal, header["op"], header["kind"].removeprefix("site-"), header.get("new_primary"),
                     dict(header.get("args") or {}), state.groups, say)
    runner.take_lock(break_lock)
    runner.record("resume", pid=os.getpid())
    first = next((i for i in range(len(state.groups)) if state.groups_ended.get(i) not in ("success", "partial")),
                 len(state.groups))

    def tasks(index: int) -> dict[str, Callable[[], ServiceResult]]:
        return {name: _resume_task(runner, state, index, name) for name in state.groups[index]["services"]}

    return runner.drive(first, tasks)


def _resume_task(runner: SiteRun, state: SiteState, group: int, service: str) -> Callable[[], ServiceResult]:
    child = state.children.get(service)
    recorded = state.outcomes.get(service)
    if recorded in ("skipped", "success"):  # done before the interruption: nothing more to record
        return lambda: ServiceResult(service, child, recorded)
    if child and child_outcome(runner.config, child) in ("unfinished", "halted"):
        return lambda: runner.resume_part(group, service, child)
    return lambda: runner.fresh_part(group, service)


def child_outcome(config: Config, op_id: str) -> str:
    """A service operation's outcome, read from its journal (refused: it never started one)."""
    from dcctl.ops.report import build_report

    entries = Journal.open(config.state_dir, op_id).entries()
    return build_report(entries)["outcome"] if entries else "refused"


def run_at_once(tasks: dict[str, Callable[[], ServiceResult]]) -> dict[str, ServiceResult]:
    """Runs the services of a group in threads and waits for all of them, waking often enough that
    Ctrl-C is handled at once. Daemon threads: a second Ctrl-C exits without waiting for them."""
    results: dict[str, ServiceResult] = {}

    def work(name: str, task: Callable[[], ServiceResult]) -> None:
        try:
            results[name] = task()
        except BaseException as exc:  # recorded as the service's outcome, never lost in a thread
            results[name] = ServiceResult(name, None, "failed", f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(name, task), daemon=True, name=f"dcctl-site-{name}")
               for name, task in tasks.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            # Short: a SIGINT the kernel hands to a worker thread is only run by the main thread
            # when it wakes, and a first Ctrl-C must reach the services before their next step.
            thread.join(0.01)
    return results


class SiteCtrlC:
    """Ctrl-C during a site operation, as in a single one (ops/engine.CtrlC): the first is passed
    on to every service moving now (each finishes its step, then rolls back or, past its point of
    no return, stops) and no further group starts; the second stops at once, and `dcctl resume`
    finishes."""

    def __init__(self, run: SiteRun):
        self.run = run
        self.previous: Any = None

    def __enter__(self) -> "SiteCtrlC":
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._pressed)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _pressed(self, _signum: int, _frame: Any) -> None:
        if self.run.interrupted:
            raise KeyboardInterrupt
        from dcctl.ops.engine import forward_ctrl_c

        self.run.interrupted = True
        self.run.record("interrupt_requested")
        self.run.say("Ctrl-C: no further group starts; each service moving now finishes its current step, then "
                     "rolls back (or, past its point of no return, stops for `dcctl resume`). Ctrl-C again to stop "
                     "at once.")
        forward_ctrl_c()

