"""The pooler steps: PgBouncer paused before the primary stops, pointed at the new primary once
it is writable, and resumed at once, so applications see one slow transaction, not an error.

A service without poolers runs them as no-ops, shown as skipped. Each step observes before it
acts (a paused database is not paused again, a pooler already pointing at the new primary is
not rewritten), so `dcctl resume` can run any of them twice.
"""
from __future__ import annotations

from typing import Any

from dcctl.config.schema import PoolerConfig
from dcctl.errors import DcctlError
from dcctl.ops.engine import Action, OpContext, OperationFailed
from dcctl.pooler import control
from dcctl.pooler.console import AdminConsole
from dcctl.transport import Transport
from dcctl.transport.local import LocalTransport

SKIPPED = "skipped: no poolers configured"
# The consoles of the running operation, opened before the pause and kept through the window, so
# that repointing and resuming take no login: (operation id, pooler name) -> console.
_OPEN: dict[tuple[str, str], AdminConsole] = {}


def _console(pooler: PoolerConfig, ctx: OpContext) -> AdminConsole:
    key = (ctx.op_id, pooler.name)
    if key not in _OPEN:
        _OPEN[key] = AdminConsole(pooler, f"{ctx.kind} {ctx.op_id}")
    return _OPEN[key]


def _close_consoles(ctx: OpContext) -> None:
    for key in [k for k in _OPEN if k[0] == ctx.op_id]:
        _OPEN.pop(key).close()


def _file_transport(ctx: OpContext):
    def transport_for(pooler: PoolerConfig) -> Transport:
        return ctx.transport(pooler.site) if pooler.site else LocalTransport("dcctl")
    return transport_for


def pause_poolers(ctx: OpContext) -> dict[str, Any]:
    # Paused right before the primary stops: new transactions queue in PgBouncer instead of
    # failing against a stopping server, and PAUSE returns only once the transactions in flight
    # have ended and their server connections are closed, so none is cut by the shutdown.
    if not ctx.service.poolers:
        return {"poolers": SKIPPED}
    paused: list[str] = []
    for pooler in ctx.service.poolers:
        try:
            _console(pooler, ctx).ready()  # every login first: then the pauses follow each other closely
        except DcctlError as exc:
            raise _cannot_pause(pooler, exc) from None
    for pooler in ctx.service.poolers:
        try:
            blockers = control.pause(_console(pooler, ctx), ctx.service)
        except DcctlError as exc:
            _resume_quietly(ctx, paused)
            raise _cannot_pause(pooler, exc) from None
        if blockers:
            _resume_quietly(ctx, paused)
            raise OperationFailed(f"pooler {pooler.name} did not pause within {pooler.pause_timeout:g} s "
                                  f"(pause_timeout): transactions in flight held it, from " + "; ".join(blockers),
                                  hint="the poolers were resumed and the switchover rolls back: end those "
                                       "transactions (or raise pause_timeout), then run it again")
        paused.append(pooler.name)
    return {"poolers_paused": paused}


def _cannot_pause(pooler: PoolerConfig, exc: DcctlError) -> OperationFailed:
    return OperationFailed(f"cannot pause pooler {pooler.name}: {exc.message}",
                           hint="the poolers paused so far were resumed; fix the pooler or remove it from "
                                "services.<service>.poolers, then run the switchover again")


def undo_pause_poolers(ctx: OpContext) -> None:
    """Rollback: every pooler resumed; one that cannot be reached is said, not fatal (the agent
    resumes it once reachable: a pooler is never left paused)."""
    _resume_quietly(ctx, [p.name for p in ctx.service.poolers])
    _close_consoles(ctx)


def _resume_quietly(ctx: OpContext, names: list[str]) -> None:
    for pooler in ctx.service.poolers:
        if pooler.name not in names:
            continue
        try:
            control.resume(_console(pooler, ctx), ctx.service)
        except DcctlError as exc:
            ctx.say(f"  could not resume pooler {pooler.name}: {exc.message} (its site's agent resumes it after "
                    f"{pooler.stuck_pause_after:g} s)")


def repoint_poolers(ctx: OpContext, *, lost_ok: bool = False) -> dict[str, Any]:
    """Point every pooler at the new primary. lost_ok (failover): a pooler that cannot be reached
    is reported, not fatal (it may sit at the lost site)."""
    if not ctx.service.poolers:
        return {"poolers": SKIPPED}
    node = ctx.node(ctx.new_primary)
    changed, already, unreachable = [], [], {}
    for pooler in ctx.service.poolers:
        try:
            console = _console(pooler, ctx)
            if control.repoint(console, ctx.service, node.host, node.port, _file_transport(ctx)):
                changed.append(pooler.name)
            else:
                already.append(pooler.name)
            state = control.observe(console, ctx.service)
            if not pooler.console_only and not state.points_at(node.host, node.port):
                raise OperationFailed(f"pooler {pooler.name} still points at {state.describe_target()} after "
                                      f"RELOAD, not at {node.host}:{node.port}: is {pooler.databases_file} "
                                      f"%include'd in its pgbouncer.ini?")
        except DcctlError as exc:
            if not lost_ok or isinstance(exc, OperationFailed):
                raise
            unreachable[pooler.name] = exc.message
    observed: dict[str, Any] = {"poolers_repointed": changed, "poolers_already_pointing": already}
    if unreachable:
        observed["poolers_unreachable"] = unreachable
    return observed


def resume_poolers(ctx: OpContext, *, lost_ok: bool = False) -> dict[str, Any]:
    if not ctx.service.poolers:
        return {"poolers": SKIPPED}
    resumed, unreachable = [], {}
    lost = ctx.observed.get("poolers_unreachable", {}) if lost_ok else {}
    try:
        for pooler in ctx.service.poolers:
            if pooler.name in lost:
                continue  # already reported by repoint_poolers: not another connect timeout after promotion
            try:
                if control.resume(_console(pooler, ctx), ctx.service):
                    resumed.append(pooler.name)
            except DcctlError as exc:
                if not lost_ok:
                    raise
                unreachable[pooler.name] = exc.message
    finally:
        _close_consoles(ctx)
    observed: dict[str, Any] = {"poolers_resumed": resumed}
    if unreachable:
        observed["poolers_resume_unreachable"] = unreachable
    return observed


def _names(ctx: OpContext) -> str:
    return ", ".join(p.name for p in ctx.service.poolers)


def _describe_pause(ctx: OpContext) -> str:
    if not ctx.service.poolers:
        return SKIPPED
    limits = ", ".join(f"{p.name} {p.pause_timeout:g} s" for p in ctx.service.poolers)
    return (f"PAUSE the service's databases in {_names(ctx)}, waiting for transactions in flight (pause_timeout: "
            f"{limits}; past it: RESUME, name the blocking clients, roll back)")


def _describe_repoint(ctx: OpContext, failover: bool = False) -> str:
    if not ctx.service.poolers:
        return SKIPPED
    node = ctx.node(ctx.new_primary)
    extra = "; an unreachable pooler is reported, not fatal" if failover else ""
    return f"rewrite the databases_file of {_names(ctx)} to {node.host}:{node.port}, RELOAD{extra}"


def _describe_resume(ctx: OpContext, failover: bool = False) -> str:
    if not ctx.service.poolers:
        return SKIPPED
    extra = "; an unreachable pooler is reported, not fatal" if failover else ""
    return f"RESUME {_names(ctx)}: the queued transactions run on {ctx.new_primary}{extra}"


PAUSE_POOLERS = Action(pause_poolers, _describe_pause, undo=undo_pause_poolers)
REPOINT_POOLERS = Action(repoint_poolers, _describe_repoint)
RESUME_POOLERS = Action(resume_poolers, _describe_resume)
FAILOVER_REPOINT_POOLERS = Action(lambda c: repoint_poolers(c, lost_ok=True), lambda c: _describe_repoint(c, True))
FAILOVER_RESUME_POOLERS = Action(lambda c: resume_poolers(c, lost_ok=True), lambda c: _describe_resume(c, True))
