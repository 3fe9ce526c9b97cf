"""Failover: the primary site is lost. The old primary is fenced first, always; then the standby
is promoted. Never two writable primaries."""
from __future__ import annotations

import posixpath
import shlex
from typing import Any

from dcctl.errors import DcctlError
from dcctl.ops.engine import Action, OpContext, OperationFailed
from dcctl.ops.filesync_actions import record_file_sync
from dcctl.ops.preflight import failover_refusals
from dcctl.ops.steps.poolers import FAILOVER_REPOINT_POOLERS, FAILOVER_RESUME_POOLERS
from dcctl.ops.steps.common import (PROMOTE, _on, gather, prepare_new_primary, record_generation, refuse,
                                    wait_writable)
from dcctl.pg import control, queries, tools

def wait_writable_alone(ctx: OpContext) -> dict[str, Any]:
    """A failover's new primary must not wait for the fenced site: in the synchronous modes its
    commits stop waiting for a standby as soon as it accepts writes (the fenced old primary
    will not answer before it is rejoined)."""
    from dcctl.ops import sync_rep

    return {**wait_writable(ctx), **sync_rep.release_after_failover(ctx)}

def preflight_failover(ctx: OpContext) -> dict[str, Any]:
    view = gather(ctx)
    old = view.site(ctx.old_primary)
    refuse("failover", failover_refusals(view, ctx.old_primary, ctx.new_primary,
                                         fence_command=ctx.service.sites[ctx.old_primary].fence_command,
                                         primary_is_down=bool(ctx.args.get("primary_is_down"))))
    if not old.reachable:
        ctx.args.setdefault("unreachable_sites", [ctx.old_primary])
    new = view.site(ctx.new_primary).answered()
    return {"old_primary_reachable": bool(old.reachable), "old_primary_role": old.role.value,
            "last_received_lsn": new.receive_lsn, "last_replayed_lsn": new.replay_lsn,
            "last_replayed_commit_at": new.last_replay_at.isoformat() if new.last_replay_at else None,
            "timeline_before": new.timeline}

def fence_old_primary(ctx: OpContext) -> dict[str, Any]:
    # Fencing comes before promotion, always: two writable primaries is the one outcome a failover
    # must never produce. A reachable old primary is stopped within operation.fence_deadline,
    # escalating (fast, immediate, then SIGKILL of its processes: a frozen server ignores the
    # others), then its data directory gets standby.signal, so a reboot or a careless restart
    # brings it back read-only instead of as a second primary. Past that, the site's
    # fence_command; past that, only the operator's declaration of an unreachable site.
    site = ctx.old_primary
    unreachable_just_now = ctx.unreachable_just_now(site)
    if unreachable_just_now and ctx.args.get("primary_is_down"):
        # Asked again, a lost site costs its whole connect timeout once more, before promotion.
        # Should it come back now, its agent fences it on the new generation (docs/reliability.md).
        return fence_unreachable(ctx, site, f"{unreachable_just_now} (at preflight, moments ago)")
    try:
        ctx.transport(site).connect()
    except DcctlError as exc:
        return fence_unreachable(ctx, site, exc.message)
    outcome, failure = stop_for_fence(ctx, site)
    if outcome is None:
        if not ctx.service.sites[site].fence_command:
            raise OperationFailed(f"cannot fence site {site}: its PostgreSQL could not be stopped (escalating for "
                                  f"up to {ctx.service.operation.fence_deadline:g} s): {failure}",
                                  hint=f"stop it by hand, or configure sites.{site}.fence_command; then "
                                       f"`dcctl resume {ctx.op_id}`")
        return {"fenced_by": run_fence_command(ctx, site, f"could not stop its PostgreSQL: {failure}")}
    node = ctx.node(site)
    if ctx.transport(site).run(["test", "-f", posixpath.join(node.data_dir, "PG_VERSION")], timeout=30).ok:
        ctx.transport(site).write_file(posixpath.join(node.data_dir, "standby.signal"), b"", mode=0o600)
    return {"fenced_by": f"stopped over {ctx.transport(site).description} ({outcome}); standby.signal written"}

def stop_for_fence(ctx: OpContext, site: str) -> tuple[str | None, str]:
    """(how it stopped, or None; why not)."""
    node = ctx.node(site)
    ctx.drop_conn(site)
    if node.control.method == "systemd":
        try:
            control.stop(ctx.transport(site), node, "immediate")
            return "stopped by systemd", ""
        except DcctlError as exc:
            return None, exc.message
    deadline = ctx.service.operation.fence_deadline
    try:
        result = ctx.transport(site).run(tools.fence_postmaster(node.data_dir, deadline), timeout=deadline + 10)
    except DcctlError as exc:
        return None, exc.message
    if result.ok:
        return result.stdout.strip(), ""
    return None, " | ".join(line for line in result.stderr.strip().splitlines()[-3:]) or f"exit code {result.rc}"

def fence_unreachable(ctx: OpContext, site: str, cause: str) -> dict[str, Any]:
    if ctx.service.sites[site].fence_command:
        return {"fenced_by": run_fence_command(ctx, site, f"site unreachable: {cause}")}
    if ctx.args.get("primary_is_down"):
        return {"fenced_by": f"operator declared site {site} down (--primary-is-down; unreachable: {cause})"}
    raise OperationFailed(f"cannot fence site {site}: unreachable ({cause}) and no fence_command")

def run_fence_command(ctx: OpContext, site: str, why: str) -> str:
    from dcctl.transport.local import LocalTransport

    fence = ctx.service.sites[site].fence_command
    assert fence  # the callers run it only when it is configured
    result = LocalTransport("dcctl").run(["sh", "-c", fence], timeout=ctx.service.sites[site].fence_command_timeout)
    if result.rc != 0:
        raise OperationFailed(f"the fence command for site {site} failed (rc {result.rc}): "
                              f"{' | '.join(result.stderr.strip().splitlines()[-3:])}", detail=result.stderr)
    return f"fence command `{fence}` ({why})"

def fence_command_shown(ctx: OpContext, site: str) -> str:
    node = ctx.node(site)
    if node.control.method == "systemd":
        return shlex.join(control.stop_argv(node, "immediate"))
    stages = ", ".join(f"SIG{signal} for {share * ctx.service.operation.fence_deadline:g} s"
                       for _mode, signal, share in tools.FENCE_STAGES)
    return (f"signal the postmaster in {node.data_dir}/postmaster.pid (checked to run in that directory): "
            f"{stages} (SIGKILL reaches its children too)")


FAILOVER: dict[str, Action] = {
    "preflight": Action(preflight_failover, lambda c: f"refuse unless {c.new_primary} is a running standby and "
                        f"{c.old_primary} can be fenced (reachable, fence_command, or --primary-is-down)"),
    "prepare": Action(prepare_new_primary, lambda c: "open the connection to the standby; reserve the return slot",
                      _on("new_primary")),
    "record_file_sync": Action(record_file_sync, lambda c: f"read the time up to which {c.new_primary} received the "
                               "file stores (for the report)", _on("new_primary")),
    "fence_old_primary": Action(fence_old_primary, lambda c: "fence: stop it within operation.fence_deadline "
                                f"({c.service.operation.fence_deadline:g} s: fast, immediate, SIGKILL) and write "
                                "standby.signal if reachable; else the fence_command; else the operator's declaration",
                                _on("old_primary"), lambda c: fence_command_shown(c, c.old_primary),
                                irreversible=True),
    "promote": PROMOTE,
    "wait_writable": Action(wait_writable_alone, lambda c: "wait until it accepts writes"
                            + ("" if c.service.replication.mode == "async" else
                               "; then clear synchronous_standby_names (the fenced site cannot answer)"),
                            _on("new_primary"), lambda c: queries.shown(queries.IN_RECOVERY)),
    "repoint_poolers": FAILOVER_REPOINT_POOLERS,
    "resume_poolers": FAILOVER_RESUME_POOLERS,
    "record_generation": Action(record_generation, lambda c: f"record the new generation; mark {c.old_primary} "
                                "fenced"),
}
