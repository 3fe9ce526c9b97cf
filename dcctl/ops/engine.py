"""Runs an operation's playbook: lock, journal around every step, rollback before the point
of no return, forward-only after it, a report at the end, and `resume` from the journal.

The point of no return is the first irreversible step (promote, fence, rewind): once it has
started, a failure stops the operation and `dcctl resume` drives it forward again, because
every step observes before it acts and can be run twice.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any, Callable

import psycopg
from psycopg.rows import DictRow

from dcctl.config.schema import Config, PostgresConfig, ServiceConfig
from dcctl.errors import DcctlError, ExitCode, Interrupted, RefusedError
from dcctl.model import ServiceView
from dcctl.ops.journal import Journal, JournalState
from dcctl.ops.lock import LockOwner, ServiceLock, wait_at_test_barrier
from dcctl.ops.playbook import Playbook, PlaybookStep
from dcctl.ops.preflight import needs_volumes
from dcctl.ops.redact import mask_secrets
from dcctl.pg.session import connect, hung_up
from dcctl.transport import Transport, open_transport


class OperationFailed(DcctlError):
    exit_code = ExitCode.FAILED


class FailedVerdict(OperationFailed):
    """The operation ran to its end and its verdict is failure (a drill whose checks failed):
    nothing to roll back, nothing to resume."""


@dataclass
class OpContext:
    op_id: str
    kind: str
    config: Config
    service_name: str
    service: ServiceConfig
    # The two sites an operation moves between, named by the journal header. Switchover and
    # failover: the primary before and after. Rejoin: the node being rejoined (old_primary) and
    # the primary it will follow (new_primary); drill: the primary and the drill site. The
    # properties below name them for those operations.
    old_primary: str
    new_primary: str
    args: dict[str, Any]
    journal: Journal
    say: Callable[[str], None] = lambda text: None
    observed: dict[str, Any] = field(default_factory=dict)
    view: ServiceView | None = None  # the snapshot the operation was planned on
    view_taken: float = 0.0  # time.monotonic() when it was taken
    # Runs a nested operation for a composite one (the full drill's switchovers): (kind, target
    # site, args, say) -> (outcome, report, operation id). Set by ops/operation.py.
    nested: Callable[..., tuple[str, Mapping[str, Any], str]] | None = None
    # Finishes (resumes) the composite's last part of a kind if it was stopped with the composite:
    # kind -> (outcome, report, operation id, its target site), or None when there is none.
    finish_part: Callable[[str, Callable[[str], None]], tuple[str, Mapping[str, Any], str, str] | None] | None = None
    _transports: dict[str, Transport] = field(default_factory=dict)
    _conns: dict[str, psycopg.Connection[DictRow]] = field(default_factory=dict)
    _adopted: set[str] = field(default_factory=set)

    VIEW_FRESH_SECONDS = 2.0

    @property
    def rejoining(self) -> str:
        """Rejoin: the site being turned into a standby."""
        return self.old_primary

    @property
    def drill_site(self) -> str:
        """Drill: the site where the throwaway copy runs."""
        return self.new_primary

    def current_view(self) -> ServiceView:
        """The planning snapshot while it is fresh (the usual case: planned, then run at once with
        --yes); a new one after a human took time to confirm, or on resume."""
        with_disks = needs_volumes(self.kind, self.args)
        view = self.view
        if (view is None or time.monotonic() - self.view_taken > self.VIEW_FRESH_SECONDS
                or (with_disks and not any(site.disks for site in view.sites))):
            from dcctl.topology import gather_view

            view = gather_view(self.config, self.service_name, self.service, with_disks=with_disks)
            self.view, self.view_taken = view, time.monotonic()
        return view

    def unreachable_just_now(self, site: str) -> str | None:
        """Why the fresh snapshot could not reach the site, or None (reached, or no fresh snapshot
        to go by). Asked again, a lost site would cost its whole connect timeout once more."""
        if self.view is None or time.monotonic() - self.view_taken > self.VIEW_FRESH_SECONDS:
            return None
        status = self.view.site(site)
        return None if status.reachable else (status.transport_error or "no answer")

    def node(self, site: str) -> PostgresConfig:
        return self.service.sites[site].postgres

    def transport(self, site: str) -> Transport:
        if site not in self._transports:
            self._transports[site] = open_transport(site, self.service.sites[site])
        return self._transports[site]

    def adopt_connections(self, connections: Mapping[str, psycopg.Connection[DictRow]]) -> None:
        """Go on with the connections the planning snapshot opened (ops/operation.plan)."""
        self._conns.update(connections)
        self._adopted.update(connections)

    def conn(self, site: str) -> psycopg.Connection[DictRow]:
        """A reused, autocommit connection to the node at `site`; reopened if it broke."""
        current = self._conns.get(site)
        if site in self._adopted and current is not None:
            self._adopted.discard(site)
            if hung_up(current):
                current.close()  # the server restarted (or ended it) since the plan
        if current is not None and not current.closed and not current.broken:
            return current
        self._conns[site] = connect(self.node(site), self.kind, site)
        return self._conns[site]

    def connect_with_retries(self, site: str) -> psycopg.Connection[DictRow]:
        """Open the connection before the window, retrying a node that is briefly unreachable
        (operation.connect_retries attempts, backing off from 0.1 s to 2 s, plus up to 0.1 s of jitter)."""
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random

        for attempt in Retrying(stop=stop_after_attempt(self.service.operation.connect_retries),
                                wait=wait_exponential(multiplier=0.1, max=2.0) + wait_random(0, 0.1),
                                retry=retry_if_exception_type(DcctlError), reraise=True):
            with attempt:
                return self.conn(site)
        raise AssertionError("unreachable")

    def drop_conn(self, site: str) -> None:
        conn = self._conns.pop(site, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for site in list(self._conns):
            self.drop_conn(site)
        for transport in self._transports.values():
            transport.close()


@dataclass(frozen=True)
class Action:
    """A built-in step: what it does, where, whether it can be undone."""

    run: Callable[[OpContext], dict[str, Any] | None]
    describe: Callable[[OpContext], str]
    site: Callable[[OpContext], str | None] = lambda ctx: None
    command: Callable[[OpContext], str | None] = lambda ctx: None
    undo: Callable[[OpContext], None] | None = None
    irreversible: bool = False


@dataclass(frozen=True)
class PlannedStep:
    label: str
    site: str | None
    describe: str
    command: str | None
    irreversible: bool


def plan_steps(ctx: OpContext, playbook: Playbook, actions: dict[str, Action]) -> list[PlannedStep]:
    """What the operation would do, concretely: the --dry-run output."""
    planned = []
    for step in playbook.steps:
        if step.hook:
            hooks = ctx.service.hooks.get(step.name, [])
            if not hooks:
                planned.append(PlannedStep(step.label, None, f"hook point {step.name}: no command configured", None,
                                           False))
            for hook in hooks:
                site = resolve_hook_site(ctx, hook.site)
                planned.append(PlannedStep(step.label, site, f"run hook ({hook.on_failure} on failure, "
                                           f"{hook.timeout:g} s)", mask_secrets(hook.run, hook.mask), False))
            continue
        action = actions[step.name]
        planned.append(PlannedStep(step.name, action.site(ctx), action.describe(ctx), action.command(ctx),
                                   action.irreversible))
    return planned


def resolve_hook_site(ctx: OpContext, site: str) -> str:
    return {"old_primary": ctx.old_primary, "new_primary": ctx.new_primary}.get(site, site)


def run_hook_point(ctx: OpContext, point: str) -> dict[str, Any]:
    outputs = []
    for hook in ctx.service.hooks.get(point, []):
        site = resolve_hook_site(ctx, hook.site)
        started = time.monotonic()
        try:
            result = ctx.transport(site).run(["sh", "-c", hook.run], timeout=hook.timeout)
            rc, err = result.rc, result.stderr.strip()
        except DcctlError as exc:
            rc, err = None, exc.message
        shown, err = mask_secrets(hook.run, hook.mask), mask_secrets(err, hook.mask)  # the journal is no vault
        outputs.append({"site": site, "run": shown, "rc": rc, "stderr": err[-2000:],
                        "seconds": round(time.monotonic() - started, 3)})
        if rc != 0 and hook.on_failure == "abort":
            raise OperationFailed(f"hook {point} at {site} failed ({'rc ' + str(rc) if rc is not None else err}): "
                                  f"{shown}", detail=err)
    return {f"hook_{point}": outputs}


def inject_fault(step: str, moment: str) -> None:
    """Test-only crash points: DCCTL_FAULT_AT=STEP:start|end[:kill|sigint] makes dcctl die
    (os._exit, as kill -9 would) or receive Ctrl-C just after STEP starts or just before it ends
    (after the step's work, before its end is journaled: `end` of the journal is the next boundary)."""
    wanted = os.environ.get("DCCTL_FAULT_AT")
    if not wanted:
        return
    target, _, rest = wanted.partition(":")
    when, _, how = rest.partition(":")
    if target != step or when != moment:
        return
    if how == "sigint":
        os.kill(os.getpid(), signal.SIGINT)
    else:
        os._exit(99)


class CtrlC:
    """What Ctrl-C does during an operation, decided once for every step:

    - the first: the running step is left to finish (a step cut half-way, e.g. inside the write
      window, is the worst place to stop), then the operation rolls back if it has not passed its
      point of no return, or stops there if it has (`dcctl resume` drives it forward);
    - the second: stop at once; the journal says where, `dcctl resume` finishes the job.
    Either way dcctl exits 130 with the resume hint.
    """

    def __init__(self, runner: "Runner"):
        self.runner = runner
        self.presses = 0
        self.previous: Any = None  # the handler to restore

    def __enter__(self) -> "CtrlC":
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._pressed)
        else:
            with _IN_THREADS_LOCK:
                _IN_THREADS.add(self)  # a site operation's service: its Ctrl-C comes through forward_ctrl_c
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        with _IN_THREADS_LOCK:
            _IN_THREADS.discard(self)

    def _pressed(self, _signum, _frame) -> None:
        self.presses += 1
        if self.presses > 1:
            raise KeyboardInterrupt
        self.runner.ctx.journal.append("interrupt_requested")
        self.runner.ctx.say("Ctrl-C: the current step finishes, then the operation rolls back (or, past its point "
                            "of no return, stops for `dcctl resume`). Ctrl-C again to stop at once.")

    def stop_here_if_asked(self, step: str) -> None:
        if self.presses:
            self.runner._interrupted_at_boundary(step)


_IN_THREADS: set[CtrlC] = set()
_IN_THREADS_LOCK = threading.Lock()


def forward_ctrl_c() -> None:
    """The first Ctrl-C of a site operation, passed on to each operation running in one of its
    threads (only the main thread receives the signal): each follows the policy above."""
    with _IN_THREADS_LOCK:
        running = list(_IN_THREADS)
    for ctrl_c in running:
        if not ctrl_c.presses:
            ctrl_c._pressed(signal.SIGINT, None)


class Runner:
    def __init__(self, ctx: OpContext, playbook: Playbook, actions: dict[str, Action], *, takes_lock: bool = True):
        """takes_lock=False: a composite operation (the full drill), whose parts take the lock."""
        self.ctx = ctx
        self.playbook = playbook
        self.actions = actions
        self.takes_lock = takes_lock
        self.owner = LockOwner(ctx.op_id, socket.gethostname(), os.getpid(), time.time())
        self.lock = ServiceLock(ctx.config.state_dir, ctx.service_name,
                                {site: (ctx.transport(site), cfg.state_dir) for site, cfg in ctx.service.sites.items()})

    def run(self, *, resume_state: JournalState | None = None, break_lock: bool = False) -> str:
        """Runs (or resumes) the playbook under the Ctrl-C policy; returns the outcome."""
        with CtrlC(self) as ctrl_c:
            self.ctrl_c = ctrl_c
            return self._run(resume_state=resume_state, break_lock=break_lock)

    def _run(self, *, resume_state: JournalState | None = None, break_lock: bool = False) -> str:
        """Runs (or resumes) the playbook; returns the outcome: success or rolled_back.

        The lock is taken first, so a second operation is refused with its owner named before
        anything else is asked of the sites.
        """
        done = set(resume_state.ended) if resume_state else set()
        locked = False
        try:
            if self.takes_lock:
                self._acquire_lock(break_lock)
            locked = True
            if resume_state is not None:
                self.ctx.observed.update(resume_state.observed)
                if not self._past_no_return(resume_state.started):
                    return self._rollback(resume_state.started, "resumed before the point of no return")
            steps = list(self.playbook.steps)
            for index, step in enumerate(steps, start=1):
                if step.label not in done:
                    self._run_step(index, len(steps), step)
                    self.ctrl_c.stop_here_if_asked(step.label)
            self.ctx.journal.append("finish", outcome="success")
            return "success"
        except RefusedError as exc:
            if not locked or self._only_preflight_started():
                self.ctx.journal.append("finish", outcome="refused", error=exc.message)
                raise
            self._fail_or_roll_back(exc)
            raise
        except Interrupted:
            raise  # the first Ctrl-C, already rolled back or halted at a step boundary
        except FailedVerdict as exc:
            self.ctx.journal.append("finish", outcome="failed", reason=exc.message)
            raise
        except KeyboardInterrupt:
            # The second Ctrl-C: stop now, in the middle of a step, and roll nothing back here (an
            # undo interrupted half-way is worse than none): resume re-observes and finishes it.
            self.ctx.journal.append("halt", reason="interrupted by a second Ctrl-C")
            raise Interrupted(f"{self.ctx.kind} {self.ctx.op_id} stopped by a second Ctrl-C in the middle of a "
                              f"step", hint=f"`dcctl resume {self.ctx.op_id}` rolls it back or drives it forward "
                                            f"(`dcctl status` shows where the roles are now)") from None
        except BaseException as exc:
            self._fail_or_roll_back(exc)
            raise
        finally:
            if locked and self.takes_lock and self._finished():
                if os.environ.get("DCCTL_FAULT_BEFORE_UNLOCK"):
                    os._exit(99)  # fault injection for tests: die between the journal's finish and the release
                self.lock.release(self.owner)
            self.ctx.close()

    def _interrupted_at_boundary(self, step: str) -> None:
        """The first Ctrl-C, acted on once the step that was running has ended."""
        started = [e["step"] for e in self.ctx.journal.entries() if e["event"] == "step_start"]
        reason = f"interrupted by Ctrl-C after step {step}"
        if self._past_no_return(started):
            self.ctx.journal.append("halt", reason=reason)
            raise Interrupted(f"{self.ctx.kind} {self.ctx.op_id} stopped after step {step} (Ctrl-C), past its "
                              f"point of no return", hint=f"`dcctl resume {self.ctx.op_id}` drives it forward")
        self._rollback(started, reason)
        raise Interrupted(f"{self.ctx.kind} {self.ctx.op_id} rolled back after step {step} (Ctrl-C)",
                          hint="nothing changed roles; run the operation again when ready")

    def _only_preflight_started(self) -> bool:
        return {e["step"] for e in self.ctx.journal.entries() if e["event"] == "step_start"} <= {"preflight"}

    def _fail_or_roll_back(self, exc: BaseException) -> None:
        started = [e["step"] for e in self.ctx.journal.entries() if e["event"] == "step_start"]
        reason = exc.message if isinstance(exc, DcctlError) else f"{type(exc).__name__}: {exc}"
        if self._past_no_return(started):
            self.ctx.journal.append("halt", reason=reason)
            if isinstance(exc, DcctlError):
                exc.hint = (f"the operation is past its point of no return: fix the cause, then "
                            f"`dcctl resume {self.ctx.op_id}` drives it forward")
            return
        self._rollback(started, reason)

    def _finished(self) -> bool:
        return any(e["event"] == "finish" for e in self.ctx.journal.entries())

    def _acquire_lock(self, break_lock: bool) -> None:
        skip = tuple(self.ctx.args.get("unreachable_sites", ()))
        skip += tuple(site for site in self.ctx.service.sites if site not in skip and self.ctx.unreachable_just_now(site))
        wait_at_test_barrier()
        self.lock.acquire(self.owner, break_stale=break_lock, skip_sites=skip, say=self.ctx.say)
        try:
            self.ctx.journal.append("lock", sites=self.lock.held_at, unreachable=self.lock.unreachable,
                                    owner=self.owner.__dict__)
        except BaseException:
            self.lock.release(self.owner)
            raise

    def _past_no_return(self, started: list[str]) -> bool:
        return any(name in self.actions and self.actions[name].irreversible for name in started)

    def _run_step(self, index: int, total: int, step: PlaybookStep) -> None:
        ctx = self.ctx
        ctx.say(f"[{index}/{total}] {step.label}")
        ctx.journal.append("step_start", step=step.label, index=index)
        inject_fault(step.label, "start")
        started = time.monotonic()
        try:
            observed = run_hook_point(ctx, step.name) if step.hook else (self.actions[step.name].run(ctx) or {})
        except BaseException as exc:
            message = exc.message if isinstance(exc, DcctlError) else f"{type(exc).__name__}: {exc}"
            ctx.journal.append("step_fail", step=step.label, error=message)
            if isinstance(exc, (FailedVerdict, Interrupted)):
                raise  # Interrupted: a composite's part stopped by Ctrl-C; the composite stops there too
            if isinstance(exc, DcctlError) and not isinstance(exc, RefusedError):
                raise OperationFailed(f"{ctx.kind} {ctx.op_id}: step {index}/{total} '{step.label}' failed: "
                                      f"{message}", hint=exc.hint, detail=exc.detail) from exc
            if isinstance(exc, Exception) and not isinstance(exc, DcctlError):
                # Unforeseen (a psycopg error, a bug): still one line naming the step; -v shows it whole.
                raise OperationFailed(f"{ctx.kind} {ctx.op_id}: step {index}/{total} '{step.label}' failed: "
                                      f"{message.splitlines()[0] if message.strip() else message}",
                                      detail=message) from exc
            raise
        inject_fault(step.label, "end")
        ctx.observed.update(observed)
        # Not flushed on its own: the next entry (a step_start, finish, rollback or halt) always is,
        # and a step whose end is lost in a crash is one a resume finds started, as with a crash
        # just before this line; every step observes before it acts.
        ctx.journal.append("step_end", durable=False, step=step.label, seconds=round(time.monotonic() - started, 4),
                           observed=observed)
        if os.environ.get("DCCTL_FAULT_AFTER_STEP") == step.label:
            os._exit(99)  # fault injection for tests: die exactly at this step boundary

    def _rollback(self, started: list[str], reason: str) -> str:
        ctx = self.ctx
        ctx.say(f"rolling back: {reason}")
        ctx.journal.append("rollback_start", reason=reason)
        undone = []
        for name in reversed(started):
            action = self.actions.get(name)
            if action and action.undo:
                ctx.say(f"  undo {name}")
                action.undo(ctx)
                undone.append(name)
        ctx.journal.append("rollback_end", undone=undone)
        ctx.journal.append("finish", outcome="rolled_back", reason=reason)
        return "rolled_back"
