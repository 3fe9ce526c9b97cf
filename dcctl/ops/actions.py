"""The built-in steps of switchover, failover and rejoin: one small function each, observing
before acting so that each can run twice (resume) without harm."""
from __future__ import annotations

import os
import posixpath
import shlex
import time
from datetime import datetime, timezone
from typing import Any

from dcctl.errors import DcctlError, RefusedError, ToolError
from dcctl.ops import detached, generation
from dcctl.ops.engine import Action, OpContext, OperationFailed
from dcctl.ops.preflight import failover_refusals, rejoin_refusals, switchover_refusals
from dcctl.pg import control, queries, standby_conf, tools
from dcctl.pg.controldata import ControlData, parse_controldata
from dcctl.pg.lsn import parse_lsn
from dcctl.pg.timeline import fork_point, parse_history, summarize_waldump, wal_segment_name, waldump_trouble

POLL = 0.005  # seconds between polls inside the write-unavailability window


# ---- shared helpers -------------------------------------------------------------------------

def controldata(ctx: OpContext, site: str) -> ControlData:
    node = ctx.node(site)
    result = ctx.transport(site).run(tools.pg_controldata(node.bin_dir, node.data_dir), timeout=30,
                                     env={"LC_ALL": "C"})
    result.check(f"pg_controldata at site {site}")
    return parse_controldata(result.stdout)


def stop_node(ctx: OpContext, site: str, mode: str) -> str:
    node = ctx.node(site)
    ctx.drop_conn(site)
    if node.control.method == "systemd":
        control.stop(ctx.transport(site), node, mode)
        return "stopped"
    deadline = ctx.service.operation.stop_deadline
    result = ctx.transport(site).run(tools.signal_stop(node.data_dir, mode, deadline), timeout=deadline + 10)
    result.check(f"stopping PostgreSQL at site {site} ({mode})")
    return result.stdout.strip()


def start_node(ctx: OpContext, site: str) -> None:
    node = ctx.node(site)
    if node.control.method == "systemd":
        control.start(ctx.transport(site), node)
        return
    ctx.transport(site).run(tools.pg_ctl_start_nowait(node.bin_dir, node.data_dir, control.log_file(node)),
                            timeout=60).check(f"starting PostgreSQL at site {site}")


def node_running(ctx: OpContext, site: str) -> bool:
    node = ctx.node(site)
    return ctx.transport(site).run(["test", "-e", posixpath.join(node.data_dir, "postmaster.pid")],
                                   timeout=30).rc == 0 and control.is_running(ctx.transport(site), node)


def poll(what: str, deadline: float, probe, interval: float = POLL, hint: str | None = None):
    """Call probe() until it returns something truthy; DcctlErrors from it count as 'not yet'."""
    end = time.monotonic() + deadline
    last = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except OperationFailed:
            raise  # the probe knows that waiting cannot help
        except DcctlError as exc:
            last = exc.message
        except Exception as exc:  # psycopg errors while a server restarts
            last = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if time.monotonic() >= end:
            raise ToolError(f"{what}: not reached within {deadline:g} s" + (f" (last: {last})" if last else ""),
                            hint=hint)
        time.sleep(interval)


def in_recovery(ctx: OpContext, site: str) -> bool:
    return ctx.conn(site).execute("SELECT pg_catalog.pg_is_in_recovery() AS r").fetchone()["r"]


def slot_for(ctx: OpContext, site: str) -> str:
    return standby_conf.slot_name(site, ctx.node(site))


def gather(ctx: OpContext):
    from dcctl.topology import gather_view

    return gather_view(ctx.config, ctx.service_name, ctx.service)


def refuse(kind: str, reasons: list[str]) -> None:
    if reasons:
        raise RefusedError(f"{kind} refused:\n  - " + "\n  - ".join(reasons))


# ---- switchover -----------------------------------------------------------------------------

def preflight_switchover(ctx: OpContext) -> dict[str, Any]:
    nudge_stream(ctx, ctx.old_primary, ctx.new_primary, ctx.service.operation.max_receipt_age)
    view = gather(ctx)
    refuse("switchover", switchover_refusals(view, ctx.service, ctx.old_primary, ctx.new_primary))
    old, new = view.site(ctx.old_primary).node, view.site(ctx.new_primary).node
    return {"timeline_before": old.timeline, "primary_lsn_before": old.current_lsn,
            "standby_replay_lsn_before": new.replay_lsn}


def nudge_stream(ctx: OpContext, primary: str, standby: str, wait: float) -> None:
    """Write one commit record on the primary and wait (up to `wait` s) until the standby's WAL
    receiver has heard from the primary since. An idle primary sends nothing until the receiver
    pings it (after wal_receiver_timeout / 2), so without this preflight could not tell a quiet
    receiver from a hung one by its last receipt."""
    if not wait:
        return
    try:
        since = ctx.conn(standby).execute(queries.SERVER_NOW).fetchone()["now"]  # the standby's clock
        ctx.conn(primary).execute(queries.STREAM_NUDGE)

        def heard():
            row = ctx.conn(standby).execute(queries.RECEIVER_HEARD_SINCE, (since,)).fetchone()
            return row is not None and row["heard"]

        poll(f"standby {standby} hearing from {primary}", wait, heard, interval=0.02)
    except Exception:
        pass  # preflight's own probe tells a node that does not answer, or a receiver that does not hear
    finally:
        ctx.drop_conn(primary)
        ctx.drop_conn(standby)


def prepare(ctx: OpContext) -> dict[str, Any]:
    """Everything the window needs, opened before it starts: sessions, connections, the return slot."""
    check_filesync_paths(ctx)
    for site in (ctx.old_primary, ctx.new_primary):
        ctx.transport(site).connect()
    ctx.connect_with_retries(ctx.new_primary)
    if ctx.kind == "switchover":
        ctx.connect_with_retries(ctx.old_primary)
        # Created (reserving WAL) on the standby before promotion: once promoted, it keeps the WAL
        # the old primary needs to follow, and no slot creation is left inside the window.
        return {"return_slot": reserve_return_slot(ctx)}
    return {}


def check_filesync_paths(ctx: OpContext) -> None:
    """A file-sync setting that cannot work must stop the switchover before writes stop, not in
    its final sync (the SSH control socket path has a length limit)."""
    from dcctl.filesync.layout import control_path

    for site in (ctx.old_primary, ctx.new_primary):
        peer = ctx.new_primary if site == ctx.old_primary else ctx.old_primary
        if ctx.service.sites[site].file_stores:
            control_path(ctx.service.sites[site].state_dir, ctx.service_name, peer, "op")


def checkpoint_primary(ctx: OpContext) -> dict[str, Any]:
    ctx.conn(ctx.old_primary).execute("CHECKPOINT")
    return {}


def stop_primary(ctx: OpContext) -> dict[str, Any]:
    # A clean fast shutdown: the walsender sends everything up to and including the shutdown
    # checkpoint to the standby before the postmaster exits. Immediate mode would not.
    started = time.time()
    outcome = stop_node(ctx, ctx.old_primary, "fast")
    return {"writes_stopped_at": started, "stop": outcome}


def undo_stop_primary(ctx: OpContext) -> None:
    if node_running(ctx, ctx.old_primary) and controldata(ctx, ctx.old_primary).state == "shut down":
        finish_shutdown(ctx, ctx.old_primary)
    if not node_running(ctx, ctx.old_primary):
        start_node(ctx, ctx.old_primary)
        poll(f"old primary {ctx.old_primary} accepting writes again", ctx.service.operation.promote_deadline,
             lambda: not in_recovery(ctx, ctx.old_primary), interval=0.05)


def finish_shutdown(ctx: OpContext, site: str) -> None:
    # The shutdown checkpoint is written, but the postmaster still waits for its walsenders, each
    # waiting for its standby to confirm that checkpoint: a hung WAL receiver would hold the old
    # primary down for wal_sender_timeout. Ending them loses nothing (the WAL stays here, and the
    # standby, behind, catches up once it streams again), and lets the rollback restart it now.
    node = ctx.node(site)
    ctx.transport(site).run(tools.end_walsenders(node.data_dir), timeout=30).check(
        f"ending the walsenders of the stopping PostgreSQL at site {site}")
    stop_node(ctx, site, "fast")


def read_shutdown_checkpoint(ctx: OpContext) -> dict[str, Any]:
    data = controldata(ctx, ctx.old_primary)
    if data.state != "shut down":
        raise OperationFailed(f"the old primary's cluster state is {data.state!r}, not 'shut down': its last "
                              f"WAL may not have reached the standby")
    return {"shutdown_checkpoint_lsn": data.checkpoint_lsn, "shutdown_timeline": data.timeline}


def wait_replayed(ctx: OpContext) -> dict[str, Any]:
    # "Latest checkpoint location" is the START of the shutdown checkpoint record, and the replay
    # LSN is the END of the last replayed record: the record is replayed only when replay > location.
    target = parse_lsn(ctx.observed["shutdown_checkpoint_lsn"])
    conn = ctx.conn(ctx.new_primary)

    def replayed():
        lsn = conn.execute("SELECT pg_catalog.pg_last_wal_replay_lsn()::text AS l").fetchone()["l"]
        return lsn if lsn and parse_lsn(lsn) > target else None

    lsn = poll(f"standby {ctx.new_primary} replaying past the shutdown checkpoint "
               f"{ctx.observed['shutdown_checkpoint_lsn']}", ctx.service.operation.replay_deadline, replayed,
               hint="the switchover is rolled back: the old primary restarts as primary")
    return {"standby_replayed_lsn": lsn}


def promote(ctx: OpContext) -> dict[str, Any]:
    # Point of no return. From here the old primary must never run as a primary again: its data
    # directory is turned into a standby before it is started (configure_old_primary_as_standby).
    if not in_recovery(ctx, ctx.new_primary):
        return {"promote": "already promoted"}
    ctx.conn(ctx.new_primary).execute("SELECT pg_catalog.pg_promote(false)")
    return {"promoted_at": time.time()}


def wait_writable(ctx: OpContext) -> dict[str, Any]:
    poll(f"{ctx.new_primary} accepting writes", ctx.service.operation.promote_deadline,
         lambda: not in_recovery(ctx, ctx.new_primary))
    writable_at = time.time()
    row = ctx.conn(ctx.new_primary).execute(
        "SELECT ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))"
        "::bit(32)::int AS tli, pg_catalog.pg_current_wal_lsn()::text AS lsn").fetchone()
    return {"writable_at": writable_at, "timeline_after": row["tli"], "new_primary_lsn": row["lsn"]}


def configure_old_primary_as_standby(ctx: OpContext) -> dict[str, Any]:
    site, node = ctx.old_primary, ctx.node(ctx.old_primary)
    if node_running(ctx, site):
        stop_node(ctx, site, "fast")
    settings = standby_conf.standby_settings(ctx.node(ctx.new_primary), site, node)
    write_standby_files(ctx, site, settings)
    return {"old_primary_follows": ctx.new_primary, "old_primary_slot": settings["primary_slot_name"]}


def write_standby_files(ctx: OpContext, site: str, settings: dict[str, str]) -> None:
    node, transport = ctx.node(site), ctx.transport(site)
    auto_conf = posixpath.join(node.data_dir, "postgresql.auto.conf")
    try:
        current = transport.read_file(auto_conf).decode()
    except DcctlError:
        current = ""
    transport.write_file(auto_conf, standby_conf.update_auto_conf(current, settings).encode(), mode=0o600)
    transport.write_file(posixpath.join(node.data_dir, "standby.signal"), b"", mode=0o600)


def start_old_primary(ctx: OpContext) -> dict[str, Any]:
    if not node_running(ctx, ctx.old_primary):
        start_node(ctx, ctx.old_primary)
    return {}


def wait_old_primary_streaming(ctx: OpContext) -> dict[str, Any]:
    site = ctx.old_primary

    def streaming():
        ctx.drop_conn(site) if ctx._conns.get(site) is not None and ctx._conns[site].broken else None
        row = ctx.conn(site).execute("SELECT status FROM pg_catalog.pg_stat_wal_receiver").fetchone()
        return row is not None and row["status"] == "streaming"

    poll(f"{site} streaming from {ctx.new_primary}", ctx.service.operation.stream_deadline, streaming,
         interval=0.02, hint=f"see the PostgreSQL log at site {site} ({control.log_file(ctx.node(site))})")
    return {"old_primary_streaming_at": time.time()}


def record_generation(ctx: OpContext) -> dict[str, Any]:
    row = ctx.conn(ctx.new_primary).execute(
        "SELECT ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))"
        "::bit(32)::int AS tli").fetchone()
    fenced = [ctx.old_primary] if ctx.kind == "failover" else []
    record = generation.Generation(ctx.service_name, row["tli"], ctx.new_primary, fenced, ctx.op_id, time.time())
    written = generation.record(ctx, record)
    return {"generation": row["tli"], "generation_recorded_at": written}


# ---- failover -------------------------------------------------------------------------------

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
    new = view.site(ctx.new_primary).node
    return {"old_primary_reachable": bool(old.reachable), "old_primary_role": old.role.value,
            "last_received_lsn": new.receive_lsn, "last_replayed_lsn": new.replay_lsn,
            "last_replayed_commit_at": new.last_replay_at.isoformat() if new.last_replay_at else None,
            "timeline_before": new.timeline}


def prepare_failover(ctx: OpContext) -> dict[str, Any]:
    ctx.transport(ctx.new_primary).connect()
    ctx.connect_with_retries(ctx.new_primary)
    if ctx.kind == "failover":
        # Reserved before promotion, like switchover's return slot: the WAL from the fork on stays
        # on the new primary until the old one is rejoined, or a later rejoin cannot stream.
        return {"return_slot": reserve_return_slot(ctx)}
    return {}


def reserve_return_slot(ctx: OpContext) -> str:
    slot = slot_for(ctx, ctx.old_primary)
    ctx.conn(ctx.new_primary).execute(
        "SELECT pg_catalog.pg_create_physical_replication_slot(%s, true) "
        "WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = %s)", (slot, slot))
    return slot


def fence_old_primary(ctx: OpContext) -> dict[str, Any]:
    # Fencing comes before promotion, always: two writable primaries is the one outcome a failover
    # must never produce. A reachable old primary is stopped within operation.fence_deadline,
    # escalating (fast, immediate, then SIGKILL of its processes: a frozen server ignores the
    # others), then its data directory gets standby.signal, so a reboot or a careless restart
    # brings it back read-only instead of as a second primary. Past that, the site's
    # fence_command; past that, only the operator's declaration of an unreachable site.
    site = ctx.old_primary
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
    result = LocalTransport("dcctl").run(["sh", "-c", fence], timeout=ctx.service.sites[site].fence_command_timeout)
    if result.rc != 0:
        raise OperationFailed(f"the fence command for site {site} failed (rc {result.rc}): "
                              f"{' | '.join(result.stderr.strip().splitlines()[-3:])}", detail=result.stderr)
    return f"fence command `{fence}` ({why})"


# ---- rejoin ---------------------------------------------------------------------------------

def preflight_rejoin(ctx: OpContext) -> dict[str, Any]:
    view = gather(ctx)
    refuse("rejoin", rejoin_refusals(view, ctx.old_primary, ctx.new_primary))
    node = view.site(ctx.old_primary).node
    if node and node.in_recovery and node.receiver_status == "streaming" and not ctx.args.get("force"):
        raise RefusedError(f"site {ctx.old_primary} already streams from {node.upstream}: nothing to rejoin")
    allow_reclone = bool(ctx.args.get("allow_reclone"))
    wrecked = half_rewound_by(ctx)
    if wrecked and not allow_reclone:
        raise RefusedError(f"site {ctx.old_primary}'s data directory was left half-rewound by operation {wrecked} "
                           f"(its pg_rewind was cut off): only a re-clone can repair it",
                           hint="rejoin with --allow-reclone (the directory is kept aside, never deleted)")
    try:
        data = controldata(ctx, ctx.old_primary)
    except DcctlError as exc:
        if not allow_reclone:
            raise
        return {"old_state": f"unreadable ({exc.message})", "old_timeline": None, "rewindable": False,
                "half_rewound_by": wrecked}
    primary_tli = view.site(ctx.new_primary).node.timeline if view.site(ctx.new_primary).node else None
    if data.timeline == primary_tli and data.state in ("shut down", "in production"):
        # Two primaries on one timeline: no fork is recorded anywhere, so pg_rewind finds nothing
        # to undo and the node would then fail to replay ("record with incorrect prev-link").
        why = (f"site {ctx.old_primary} ran as a primary on timeline {data.timeline}, the primary's own: its "
               f"writes cannot be rewound (no fork point), only re-cloned")
        if not allow_reclone:
            raise RefusedError(why, hint="rejoin with --allow-reclone (its data directory is kept aside, never "
                                         "deleted); compare the kept directory with the primary to recover rows")
        return {"old_state": data.state, "old_timeline": data.timeline, "rewindable": False,
                "half_rewound_by": wrecked, "same_timeline_primary": why}
    if not data.rewindable and not allow_reclone:
        raise RefusedError(f"site {ctx.old_primary} has neither wal_log_hints nor data checksums: pg_rewind "
                           f"cannot rejoin it", hint="re-clone it with --allow-reclone (its data directory is "
                                                     "kept aside, never deleted)")
    return {"old_state": data.state, "old_timeline": data.timeline, "old_checkpoint_lsn": data.checkpoint_lsn,
            "rewindable": data.rewindable and not wrecked, "half_rewound_by": wrecked}


def rewind_job_dir(ctx: OpContext, site: str) -> str:
    return posixpath.join(ctx.service.sites[site].state_dir, f"{ctx.service_name}.rewind")


def half_rewound_by(ctx: OpContext) -> str | None:
    """The operation whose pg_rewind was cut off in this data directory, if one was.

    A pg_rewind that dies while copying leaves a directory PostgreSQL's docs call likely
    unrecoverable (zero-length WAL files, "record with incorrect prev-link"): never rewind it
    again, never count from its WAL; re-clone it."""
    job = detached.status(ctx.transport(ctx.old_primary), rewind_job_dir(ctx, ctx.old_primary))
    if job.owner == ctx.op_id or job.state in ("none",) or (job.state == "done" and job.rc == 0):
        return None
    if job.state == "running":
        raise RefusedError(f"a pg_rewind started by operation {job.owner} still runs at site {ctx.old_primary}",
                           hint=f"let it finish, then `dcctl resume {job.owner}`")
    log = detached.log_tail(ctx.transport(ctx.old_primary), rewind_job_dir(ctx, ctx.old_primary))
    if job.state == "done" and not rewind_touched_target(log):
        return None
    return job.owner or "an earlier rejoin"


def stop_old_primary(ctx: OpContext) -> dict[str, Any]:
    if node_running(ctx, ctx.old_primary):
        return {"stop": stop_node(ctx, ctx.old_primary, "fast")}
    return {"stop": "not running"}


def checkpoint_new_primary(ctx: OpContext) -> dict[str, Any]:
    # pg_rewind reads the source's timeline from its control file, which a just-promoted primary
    # updates only at its first checkpoint.
    ctx.conn(ctx.new_primary).execute("CHECKPOINT")
    return {}


def assess_divergence(ctx: OpContext) -> dict[str, Any]:
    """What a rewind will discard: commits on the old primary after the fork point, counted from its WAL."""
    wrecked = ctx.observed.get("half_rewound_by")
    same_timeline = ctx.observed.get("same_timeline_primary")
    if wrecked or same_timeline or ctx.observed.get("old_timeline") is None and ctx.args.get("allow_reclone"):
        reason = (f"the directory was left half-rewound by operation {wrecked}, whose report counted what it "
                  f"discarded" if wrecked else same_timeline
                  or f"its control file is unreadable ({ctx.observed.get('old_state')})")
        return {"fork_lsn": None, "diverged_commits": None, "needs_reclone": reason,
                "divergence": f"not counted here: {reason}; the old directory is kept aside by the re-clone"}
    old_tli = ctx.observed.get("old_timeline") or controldata(ctx, ctx.old_primary).timeline
    conn = ctx.conn(ctx.new_primary)
    tli = conn.execute("SELECT ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()),"
                       " 1, 8))::bit(32)::int AS tli").fetchone()["tli"]
    if tli == old_tli:
        return {"fork_lsn": None, "diverged_commits": 0, "divergence": "none: same timeline as the primary",
                "primary_timeline": tli}
    history = conn.execute("SELECT pg_catalog.pg_read_file(%s) AS h",
                           (f"pg_wal/{tli:08X}.history",)).fetchone()["h"]
    fork = fork_point(parse_history(history), old_tli)
    if fork is None:
        return {"fork_lsn": None, "diverged_commits": None,
                "divergence": f"timeline {old_tli} is not in the primary's history: a re-clone is needed"}
    node = ctx.node(ctx.old_primary)
    segment = wal_segment_name(old_tli, fork, controldata(ctx, ctx.old_primary).wal_segment_size)
    wal_dir = posixpath.join(node.data_dir, "pg_wal")
    listing = ctx.transport(ctx.old_primary).run(["ls", "-1", wal_dir], timeout=60)
    listing.check(f"listing {wal_dir}")
    later = [name for name in listing.stdout.split() if len(name) == 24 and name[:8] == segment[:8]
             and name >= segment]
    if not later:
        # The old primary never wrote into the segment that holds the fork point, nor any after it.
        return {"fork_lsn": fork, "fork_timeline": old_tli, "diverged_commits": 0, "diverged_tables": [],
                "divergence": f"none: {ctx.old_primary} wrote no WAL after the fork at {fork} (timeline {old_tli})"}
    dump = ctx.transport(ctx.old_primary).run(
        tools.pg_waldump(node.bin_dir, wal_dir, old_tli, fork, segment, max(later)),
        timeout=ctx.service.operation.rewind_deadline)
    trouble = waldump_trouble(dump.stderr, fork)
    if trouble and ctx.args.get("allow_reclone"):
        reason = f"its WAL after the fork cannot be read ({trouble})"
        return {"fork_lsn": fork, "fork_timeline": old_tli, "diverged_commits": None, "needs_reclone": reason,
                "divergence": f"not counted: {reason}; the old directory is kept aside by the re-clone"}
    if trouble:
        # Never rewind on a count we cannot trust: the operator must know what will be discarded.
        raise OperationFailed(f"cannot count what the rewind would discard on {ctx.old_primary}: {trouble}",
                              hint="nothing was changed; keep the data directory (copy it aside) and inspect its "
                                   "pg_wal, or re-clone with --allow-reclone after copying it")
    summary = summarize_waldump(dump.stdout)
    tables = relation_names(ctx, summary.relations)
    verdict = (f"{summary.commits} transaction(s) committed on {ctx.old_primary} after the fork at {fork} "
               f"(timeline {old_tli}) never reached {ctx.new_primary}")
    if summary.commits:
        verdict += f", from {summary.first_commit_at} to {summary.last_commit_at}, touching {', '.join(tables)}"
    return {"fork_lsn": fork, "fork_timeline": old_tli, "primary_timeline": tli, "diverged_commits": summary.commits,
            "diverged_first_commit_at": summary.first_commit_at, "diverged_last_commit_at": summary.last_commit_at,
            "diverged_tables": tables, "diverged_wal_records": summary.records, "divergence": verdict}


def relation_names(ctx: OpContext, relations: set[tuple[int, int]]) -> list[str]:
    """(database oid, relfilenode) -> db.schema.table, looked up on the current primary."""
    if not relations:
        return []
    import psycopg

    names = []
    conn = ctx.conn(ctx.new_primary)
    databases = {row["oid"]: row["datname"] for row in conn.execute(
        "SELECT oid, datname FROM pg_catalog.pg_database WHERE datallowconn").fetchall()}
    node = ctx.node(ctx.new_primary)
    for db_oid in sorted({db for db, _ in relations}):
        nodes = sorted(rel for db, rel in relations if db == db_oid)
        if db_oid not in databases:
            names += [f"{db_oid}/{rel}" for rel in nodes]
            continue
        with psycopg.connect(host=node.host, port=node.port, user=node.user, dbname=databases[db_oid],
                             passfile=node.passfile, connect_timeout=5, autocommit=True) as db:
            found = dict(db.execute(RELATION_OWNERS, (nodes,)).fetchall())
        names += [f"{databases[db_oid]}.{found.get(rel, f'relfilenode {rel}')}" for rel in nodes]
    return sorted(set(names))


# An index or TOAST relation is reported as the table it belongs to.
RELATION_OWNERS = """
SELECT c.relfilenode, coalesce(tn.nspname || '.' || t.relname, n.nspname || '.' || c.relname)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_catalog.pg_class t ON t.oid = coalesce(i.indrelid,
     (SELECT o.oid FROM pg_catalog.pg_class o WHERE o.reltoastrelid = c.oid))
LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
WHERE c.relfilenode = ANY(%s)
"""


def keep_diverged(ctx: OpContext) -> dict[str, Any]:
    if not ctx.args.get("keep_diverged") or not ctx.observed.get("diverged_commits"):
        return {"kept_diverged": None}
    node = ctx.node(ctx.old_primary)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = node.data_dir.rstrip("/") + f".dcctl-diverged-{stamp}"
    ctx.transport(ctx.old_primary).run(["cp", "-a", node.data_dir.rstrip("/"), target],
                                       timeout=ctx.service.operation.rewind_deadline).check("copying the diverged data")
    ctx.transport(ctx.old_primary).run(["rm", "-f", posixpath.join(target, "postmaster.pid"),
                                        posixpath.join(target, "standby.signal")], timeout=30)
    return {"kept_diverged": target}


def rewind(ctx: OpContext) -> dict[str, Any]:
    # Irreversible: pg_rewind replaces the old primary's diverged blocks with the new primary's.
    # What it discards was counted by assess_divergence (and kept aside with --keep-diverged).
    # It runs detached at the site (ops/detached.py): a dcctl killed, interrupted or cut off
    # from the site must not take pg_rewind down half-way, which would wreck the directory.
    site, node, primary = ctx.old_primary, ctx.node(ctx.old_primary), ctx.node(ctx.new_primary)
    job_dir = rewind_job_dir(ctx, site)
    job = detached.status(ctx.transport(site), job_dir)
    if job.owner == ctx.op_id and job.state != "none":
        ctx.say(f"  the pg_rewind this operation started is {job.state}; taking its outcome")
        return rewind_outcome(ctx, job_dir, detached.wait(ctx.transport(site), job_dir,
                                                          ctx.service.operation.rewind_deadline))
    if ctx.observed.get("needs_reclone"):
        return reclone(ctx)
    if ctx.observed.get("fork_lsn") is None and ctx.observed.get("diverged_commits") == 0:
        return {"rewind": "not needed: the node is on the primary's timeline"}
    if ctx.observed.get("fork_lsn") is None or not ctx.observed.get("rewindable", True):
        return reclone(ctx)
    if node_running(ctx, site):
        # Never touch the role files of a running server (a hand-repaired standby, say): removing
        # its standby.signal would make its next start a second primary.
        raise OperationFailed(f"PostgreSQL runs at site {site}: a rewind needs it stopped, and dcctl never changes "
                              f"the role files of a running server", hint="`dcctl status` shows what it is now")
    # A crashed target is first recovered by pg_rewind in single-user mode, which refuses to run
    # with standby.signal (written when the node was fenced); the node is stopped, so it goes.
    ctx.transport(site).run(["rm", "-f", "--", posixpath.join(node.data_dir, "standby.signal"),
                             posixpath.join(node.data_dir, "recovery.signal")], timeout=30).check("clearing signals")
    source = tools.conninfo(host=primary.host, port=primary.port, user=primary.user, dbname=primary.dbname,
                            passfile=node.replication_passfile, application_name=f"dcctl rejoin {site}")
    detached.start(ctx.transport(site), job_dir, ctx.op_id, tools.pg_rewind(node.bin_dir, node.data_dir, source))
    ctx.journal.append("detached_start", step="rewind", site=site, job_dir=job_dir)
    if os.environ.get("DCCTL_FAULT_IN_REWIND"):
        os._exit(99)  # fault injection for tests: dcctl dies while pg_rewind runs
    return rewind_outcome(ctx, job_dir, detached.wait(ctx.transport(site), job_dir,
                                                      ctx.service.operation.rewind_deadline))


def rewind_outcome(ctx: OpContext, job_dir: str, job: detached.JobStatus) -> dict[str, Any]:
    site = ctx.old_primary
    log = detached.log_tail(ctx.transport(site), job_dir)
    if job.state == "done" and job.rc == 0:
        return {"rewind": "pg_rewind", "rewind_log_tail": log[-500:]}
    if job.state == "done" and not rewind_touched_target(log):
        if ctx.args.get("allow_reclone"):
            ctx.say(f"pg_rewind failed before changing anything ({log.strip().splitlines()[-1:]}); re-cloning "
                    f"(--allow-reclone)")
            return reclone(ctx)
        raise ToolError("pg_rewind failed", rc=job.rc, stderr=log,
                        hint="if the new primary no longer has the WAL since the fork, re-clone with --allow-reclone")
    # Cut off while copying (lost: the host rebooted or the tool was killed; or failed half-way):
    # PostgreSQL's docs say such a directory is likely unusable. The divergence was counted before
    # the rewind started (and kept aside with --keep-diverged); a re-clone keeps the directory too.
    why = "was cut off" if job.state == "lost" else f"failed half-way (rc {job.rc})"
    ctx.say(f"pg_rewind {why}: the data directory at {site} cannot be trusted; re-cloning it (kept aside)")
    result = reclone(ctx, forced=f"pg_rewind {why}")
    return {**result, "rewind_log_tail": log[-500:]}


def rewind_touched_target(log: str) -> bool:
    """Whether pg_rewind got as far as changing the target directory (pure).

    With --progress it says how much it will copy just before it starts writing.

    >>> rewind_touched_target("pg_rewind: servers diverged at WAL location 0/3000060 on timeline 1")
    False
    >>> rewind_touched_target("pg_rewind: need to copy 53 MB (total source directory size is 70 MB)")
    True
    """
    return any(mark in log for mark in ("need to copy", "creating backup label", "syncing target data directory",
                                        "Done!"))


def reclone(ctx: OpContext, forced: str | None = None) -> dict[str, Any]:
    if not ctx.args.get("allow_reclone") and not forced:
        raise OperationFailed(f"site {ctx.old_primary} cannot be rewound ({ctx.observed.get('divergence')})",
                              hint="re-clone it with --allow-reclone (the old data directory is kept aside)")
    from dcctl.replication.init import InitPlan, InitRequest, StandbyBuilder, aside_name, observe_target
    from dcctl.plan.step import QuietReporter

    node = ctx.node(ctx.old_primary)
    if node_running(ctx, ctx.old_primary):
        raise OperationFailed(f"PostgreSQL runs at site {ctx.old_primary}: a re-clone needs it stopped")
    request = InitRequest(ctx.service_name, ctx.new_primary, ctx.old_primary, ctx.node(ctx.new_primary), node, True)
    data_dir = node.data_dir.rstrip("/")
    target = observe_target(ctx.transport(ctx.old_primary), node)
    # Run again after a crash, the directory may already be aside: then there is nothing to move.
    aside = aside_name(data_dir, datetime.now(timezone.utc)) if target.data_dir_exists and not target.data_dir_empty \
        else None
    plan = InitPlan(request, standby_conf.slot_name(ctx.old_primary, node), data_dir + ".dcctl-partial",
                    aside, False, True)
    builder = StandbyBuilder(plan, ctx.transport(ctx.new_primary), ctx.transport(ctx.old_primary),
                             ctx.service.operation.stream_deadline)
    steps = [s for s in builder.steps() if s.name not in ("start_standby", "wait_streaming")]
    for step in steps:
        step.action(QuietReporter())
    return {"rewind": "re-cloned" + (f" ({forced})" if forced else ""), "old_data_kept_at": plan.aside_dir}


def create_return_slot(ctx: OpContext) -> None:
    slot = slot_for(ctx, ctx.old_primary)
    ctx.conn(ctx.new_primary).execute(
        "SELECT pg_catalog.pg_create_physical_replication_slot(%s) "
        "WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = %s)", (slot, slot))


def configure_rejoined(ctx: OpContext) -> dict[str, Any]:
    create_return_slot(ctx)
    observed = configure_old_primary_as_standby(ctx)
    detached.clear(ctx.transport(ctx.old_primary), rewind_job_dir(ctx, ctx.old_primary))
    return observed


# ---- the tables --------------------------------------------------------------------------

def stop_command(ctx: OpContext, site: str, mode: str) -> str:
    node = ctx.node(site)
    if node.control.method == "systemd":
        return shlex.join(control.stop_argv(node, mode))
    return (f"kill -{tools.STOP_SIGNALS[mode]} <pid in {node.data_dir}/postmaster.pid, checked to be PostgreSQL>; "
            f"poll every 10 ms until postmaster.pid is gone")


def fence_command_shown(ctx: OpContext, site: str) -> str:
    node = ctx.node(site)
    if node.control.method == "systemd":
        return shlex.join(control.stop_argv(node, "immediate"))
    stages = ", ".join(f"SIG{signal} for {share * ctx.service.operation.fence_deadline:g} s"
                       for _mode, signal, share in tools.FENCE_STAGES)
    return (f"signal the postmaster in {node.data_dir}/postmaster.pid (checked to run in that directory): "
            f"{stages} (SIGKILL reaches its children too)")


def start_command(ctx: OpContext, site: str) -> str:
    node = ctx.node(site)
    if node.control.method == "systemd":
        return shlex.join(control.start_argv(node))
    return shlex.join(tools.pg_ctl_start_nowait(node.bin_dir, node.data_dir, control.log_file(node)))


def _on(role: str):
    return lambda ctx: getattr(ctx, role)


def _cmd(argv_of):
    return lambda ctx: shlex.join(argv_of(ctx))


SWITCHOVER: dict[str, Action] = {
    "preflight": Action(preflight_switchover, lambda c: "refuse unless both sites answer, the standby streams "
                        "within operation.max_lag_bytes (its WAL receiver heard from the primary within "
                        "operation.max_receipt_age), on the same timeline, and pg_rewind would be possible"),
    "prepare": Action(prepare, lambda c: f"open SSH sessions and connections; create slot "
                      f"{slot_for(c, c.old_primary)} on {c.new_primary} for the return stream", _on("new_primary")),
    "checkpoint_primary": Action(checkpoint_primary, lambda c: "CHECKPOINT while writes continue",
                                 _on("old_primary"), lambda c: "CHECKPOINT"),
    "stop_primary": Action(stop_primary, lambda c: "fast shutdown (writes stop here)", _on("old_primary"),
                           lambda c: stop_command(c, c.old_primary, "fast"), undo=undo_stop_primary),
    "read_shutdown_checkpoint": Action(read_shutdown_checkpoint, lambda c: "pg_controldata: state must be 'shut "
                                       "down'; read the shutdown checkpoint location", _on("old_primary"),
                                       _cmd(lambda c: tools.pg_controldata(c.node(c.old_primary).bin_dir,
                                                                           c.node(c.old_primary).data_dir))),
    "wait_replayed": Action(wait_replayed, lambda c: f"wait until the replay LSN is past that checkpoint "
                            f"(deadline {c.service.operation.replay_deadline:g} s, else roll back)", _on("new_primary"),
                            lambda c: "SELECT pg_last_wal_replay_lsn()"),
    "promote": Action(promote, lambda c: "promote (point of no return)", _on("new_primary"),
                      lambda c: "SELECT pg_promote(false)", irreversible=True),
    "wait_writable": Action(wait_writable, lambda c: "wait until it accepts writes", _on("new_primary"),
                            lambda c: "SELECT pg_is_in_recovery()"),
    "configure_old_primary_as_standby": Action(configure_old_primary_as_standby, lambda c: f"write standby.signal, "
                                               f"primary_conninfo to {c.new_primary}, primary_slot_name "
                                               f"{slot_for(c, c.old_primary)}", _on("old_primary")),
    "start_old_primary": Action(start_old_primary, lambda c: "start it as a standby", _on("old_primary"),
                                lambda c: start_command(c, c.old_primary)),
    "wait_old_primary_streaming": Action(wait_old_primary_streaming, lambda c: f"wait until it streams from "
                                         f"{c.new_primary}", _on("old_primary")),
    "record_generation": Action(record_generation, lambda c: "record the new generation (timeline) on both sites"),
}

FAILOVER: dict[str, Action] = {
    "preflight": Action(preflight_failover, lambda c: f"refuse unless {c.new_primary} is a running standby and "
                        f"{c.old_primary} can be fenced (reachable, fence_command, or --primary-is-down)"),
    "prepare": Action(prepare_failover, lambda c: "open the connection to the standby", _on("new_primary")),
    "fence_old_primary": Action(fence_old_primary, lambda c: "fence: stop it within operation.fence_deadline "
                                f"({c.service.operation.fence_deadline:g} s: fast, immediate, SIGKILL) and write "
                                "standby.signal if reachable; else the fence_command; else the operator's declaration",
                                _on("old_primary"), lambda c: fence_command_shown(c, c.old_primary),
                                irreversible=True),
    "promote": SWITCHOVER["promote"],
    "wait_writable": Action(wait_writable_alone, lambda c: "wait until it accepts writes"
                            + ("" if c.service.replication.mode == "async" else
                               "; then clear synchronous_standby_names (the fenced site cannot answer)"),
                            _on("new_primary"), lambda c: "SELECT pg_is_in_recovery()"),
    "record_generation": Action(record_generation, lambda c: f"record the new generation; mark {c.old_primary} "
                                "fenced"),
}

REJOIN: dict[str, Action] = {
    "preflight": Action(preflight_rejoin, lambda c: f"refuse unless {c.new_primary} is a running primary and "
                        f"{c.old_primary} is reachable and can be rewound (or --allow-reclone)"),
    "prepare": Action(prepare_failover, lambda c: "open the connection to the primary", _on("new_primary")),
    "stop_old_primary": Action(stop_old_primary, lambda c: "stop it if it runs (fast)", _on("old_primary")),
    "checkpoint_new_primary": Action(checkpoint_new_primary, lambda c: "CHECKPOINT (pg_rewind needs the new "
                                     "timeline in the control file)", _on("new_primary"), lambda c: "CHECKPOINT"),
    "assess_divergence": Action(assess_divergence, lambda c: "find the fork point; count the commits after it in "
                                "the old primary's WAL (pg_waldump) and the tables they touched", _on("old_primary")),
    "keep_diverged": Action(keep_diverged, lambda c: "with --keep-diverged: copy the data directory aside first "
                            + ("(on)" if c.args.get("keep_diverged") else "(off)"), _on("old_primary")),
    "rewind": Action(rewind, lambda c: "pg_rewind from the primary" + (" (or re-clone, --allow-reclone)"
                     if c.args.get("allow_reclone") else ""), _on("old_primary"), irreversible=True),
    "configure_old_primary_as_standby": Action(configure_rejoined, lambda c: f"create slot "
                                               f"{slot_for(c, c.old_primary)} on {c.new_primary}; write "
                                               f"standby.signal and primary_conninfo", _on("old_primary")),
    "start_old_primary": SWITCHOVER["start_old_primary"],
    "wait_old_primary_streaming": SWITCHOVER["wait_old_primary_streaming"],
    "record_generation": SWITCHOVER["record_generation"],
}

def _drill_actions() -> dict[str, Action]:
    from dcctl.drill.actions import DRILL

    return DRILL


ACTIONS = {"switchover": SWITCHOVER, "failover": FAILOVER, "rejoin": REJOIN, "drill": _drill_actions()}

from dcctl.ops.filesync_actions import register as _register_filesync_steps  # noqa: E402

_register_filesync_steps(SWITCHOVER, FAILOVER, REJOIN)
