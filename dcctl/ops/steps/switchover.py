"""Switchover: both sites healthy, the primary role moves with zero committed transactions lost.
The write window runs from stop_primary to wait_writable; everything it needs is opened before."""
from __future__ import annotations

import time
from typing import Any

from dcctl.ops.engine import Action, OpContext, OperationFailed
from dcctl.ops.filesync_actions import final_file_sync, undo_final_file_sync
from dcctl.ops.preflight import switchover_refusals
from dcctl.ops.steps.poolers import PAUSE_POOLERS, REPOINT_POOLERS, RESUME_POOLERS
from dcctl.ops.steps.common import (PROMOTE, RECORD_GENERATION, START_OLD_PRIMARY, WAIT_OLD_PRIMARY_STREAMING,
                                    WAIT_WRITABLE, _cmd, _on, configure_old_primary_as_standby, controldata,
                                    gather, in_recovery, node_running, poll, refuse, reserve_return_slot,
                                    slot_for, start_node, stop_command, stop_node)
from dcctl.pg.session import one_row
from dcctl.pg import queries, tools
from dcctl.pg.lsn import parse_lsn

def preflight_switchover(ctx: OpContext) -> dict[str, Any]:
    heard = nudge_stream(ctx, ctx.old_primary, ctx.new_primary, ctx.service.operation.max_receipt_age)
    if ctx.service.operation.max_receipt_age and not heard:
        ctx.view = None  # the receiver's last receipt is judged after the nudge, on a new snapshot
    view = gather(ctx)
    refuse("switchover", switchover_refusals(view, ctx.service, ctx.old_primary, ctx.new_primary,
                                          check_receipt=not heard,
                                          min_free_ratio=ctx.service.thresholds.disk_free_crit_ratio))
    old, new = view.site(ctx.old_primary).answered(), view.site(ctx.new_primary).answered()
    return {"timeline_before": old.timeline, "primary_lsn_before": old.current_lsn,
            "standby_replay_lsn_before": new.replay_lsn}

def nudge_stream(ctx: OpContext, primary: str, standby: str, wait: float) -> bool:
    """Write one commit record on the primary and wait (up to `wait` s) until the standby's WAL
    receiver has heard from the primary since; True if it did. An idle primary sends nothing until
    the receiver pings it (after wal_receiver_timeout / 2), so without this preflight could not
    tell a quiet receiver from a hung one by its last receipt. Heard, the receiver is alive by
    construction, and the planning snapshot serves for the rest."""
    if not wait:
        return False
    try:
        since = one_row(ctx.conn(standby).execute(queries.SERVER_NOW))["now"]  # the standby's clock
        ctx.conn(primary).execute(queries.STREAM_NUDGE)

        def heard():
            row = ctx.conn(standby).execute(queries.RECEIVER_HEARD_SINCE, (since,)).fetchone()
            return row is not None and row["heard"]

        poll(f"standby {standby} hearing from {primary}", wait, heard, interval=0.005)
        return True  # the connections stay open for the steps that follow
    except Exception:
        ctx.drop_conn(primary)
        ctx.drop_conn(standby)
        return False  # preflight's own probe tells a node that does not answer, or a receiver that does not hear

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
    ctx.conn(ctx.old_primary).execute(queries.CHECKPOINT)
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
        lsn = one_row(conn.execute(queries.REPLAY_LSN))["lsn"]
        return lsn if lsn and parse_lsn(lsn) > target else None

    lsn = poll(f"standby {ctx.new_primary} replaying past the shutdown checkpoint "
               f"{ctx.observed['shutdown_checkpoint_lsn']}", ctx.service.operation.replay_deadline, replayed,
               hint="the switchover is rolled back: the old primary restarts as primary")
    return {"standby_replayed_lsn": lsn}


SWITCHOVER: dict[str, Action] = {
    "preflight": Action(preflight_switchover, lambda c: "refuse unless both sites answer, the standby streams "
                        "within operation.max_lag_bytes (its WAL receiver heard from the primary within "
                        "operation.max_receipt_age), on the same timeline, and pg_rewind would be possible"),
    "prepare": Action(prepare, lambda c: f"open SSH sessions and connections; create slot "
                      f"{slot_for(c, c.old_primary)} on {c.new_primary} for the return stream", _on("new_primary"),
                      lambda c: queries.shown(queries.CREATE_PHYSICAL_SLOT_RESERVED)),
    "checkpoint_primary": Action(checkpoint_primary, lambda c: "CHECKPOINT while writes continue",
                                 _on("old_primary"), lambda c: queries.shown(queries.CHECKPOINT)),
    "pause_poolers": PAUSE_POOLERS,
    "stop_primary": Action(stop_primary, lambda c: "fast shutdown (writes stop here)", _on("old_primary"),
                           lambda c: stop_command(c, c.old_primary, "fast"), undo=undo_stop_primary),
    "read_shutdown_checkpoint": Action(read_shutdown_checkpoint, lambda c: "pg_controldata: state must be 'shut "
                                       "down'; read the shutdown checkpoint location", _on("old_primary"),
                                       _cmd(lambda c: tools.pg_controldata(c.node(c.old_primary).bin_dir,
                                                                           c.node(c.old_primary).data_dir))),
    "final_file_sync": Action(final_file_sync, lambda c: "push what changed in the file stores since the last "
                              "reconciliation, then verify exactly those entries at both sites (a difference "
                              "rolls back); first, the old primary's agent pushes no more", _on("old_primary"),
                              undo=undo_final_file_sync),
    "wait_replayed": Action(wait_replayed, lambda c: f"wait until the replay LSN is past that checkpoint "
                            f"(deadline {c.service.operation.replay_deadline:g} s, else roll back)", _on("new_primary"),
                            lambda c: queries.shown(queries.REPLAY_LSN)),
    "promote": PROMOTE,
    "wait_writable": WAIT_WRITABLE,
    "repoint_poolers": REPOINT_POOLERS,
    "resume_poolers": RESUME_POOLERS,
    "configure_old_primary_as_standby": Action(configure_old_primary_as_standby, lambda c: f"write standby.signal, "
                                               f"primary_conninfo to {c.new_primary}, primary_slot_name "
                                               f"{slot_for(c, c.old_primary)}", _on("old_primary")),
    "start_old_primary": START_OLD_PRIMARY,
    "wait_old_primary_streaming": WAIT_OLD_PRIMARY_STREAMING,
    "record_generation": RECORD_GENERATION,
}
