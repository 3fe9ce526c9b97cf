"""Rejoin: the old primary becomes a standby of the current primary with pg_rewind (detached:
it must never be cut off half-way), or a re-clone; what it discards is counted first."""
from __future__ import annotations

import os
import posixpath
from datetime import datetime, timezone
from typing import Any

from dcctl.errors import DcctlError, RefusedError, ToolError
from dcctl.ops import detached
from dcctl.ops.engine import Action, OpContext, OperationFailed
from dcctl.ops.filesync_actions import quarantine_files, resync_files
from dcctl.ops.preflight import rejoin_refusals
from dcctl.ops.steps.common import (RECORD_GENERATION, START_OLD_PRIMARY, WAIT_OLD_PRIMARY_STREAMING, _on,
                                    configure_old_primary_as_standby, controldata, gather, node_running,
                                    prepare_new_primary, refuse, slot_for, stop_node)
from dcctl.pg.session import one_row
from dcctl.pg import queries, standby_conf, tools
from dcctl.pg.session import connect
from dcctl.pg.timeline import fork_point, parse_history, summarize_waldump, wal_segment_name, waldump_trouble

def preflight_rejoin(ctx: OpContext) -> dict[str, Any]:
    view = gather(ctx)
    refuse("rejoin", rejoin_refusals(view, ctx.rejoining, ctx.new_primary))
    node = view.site(ctx.rejoining).node
    if node and node.in_recovery and node.receiver_status == "streaming" and not ctx.args.get("force"):
        raise RefusedError(f"site {ctx.rejoining} already streams from {node.upstream}: nothing to rejoin")
    allow_reclone = bool(ctx.args.get("allow_reclone"))
    wrecked = half_rewound_by(ctx)
    if wrecked and not allow_reclone:
        raise RefusedError(f"site {ctx.rejoining}'s data directory was left half-rewound by operation {wrecked} "
                           f"(its pg_rewind was cut off): only a re-clone can repair it",
                           hint="rejoin with --allow-reclone (the directory is kept aside, never deleted)")
    try:
        data = controldata(ctx, ctx.rejoining)
    except DcctlError as exc:
        if not allow_reclone:
            raise
        return {"old_state": f"unreadable ({exc.message})", "old_timeline": None, "rewindable": False,
                "half_rewound_by": wrecked}
    primary_node = view.site(ctx.new_primary).node
    primary_tli = primary_node.timeline if primary_node else None
    own_tli = last_written_timeline(ctx, ctx.rejoining, data.timeline)
    if own_tli == primary_tli and data.state in ("shut down", "in production"):
        # Two primaries on one timeline: no fork is recorded anywhere, so pg_rewind finds nothing
        # to undo and the node would then fail to replay ("record with incorrect prev-link").
        why = (f"site {ctx.rejoining} ran as a primary on timeline {own_tli}, the primary's own: its "
               f"writes cannot be rewound (no fork point), only re-cloned")
        if not allow_reclone:
            raise RefusedError(why, hint="rejoin with --allow-reclone (its data directory is kept aside, never "
                                         "deleted); compare the kept directory with the primary to recover rows")
        return {"old_state": data.state, "old_timeline": own_tli, "rewindable": False,
                "half_rewound_by": wrecked, "same_timeline_primary": why}
    if not data.rewindable and not allow_reclone:
        raise RefusedError(f"site {ctx.rejoining} has neither wal_log_hints nor data checksums: pg_rewind "
                           f"cannot rejoin it", hint="re-clone it with --allow-reclone (its data directory is "
                                                     "kept aside, never deleted)")
    return {"old_state": data.state, "old_timeline": own_tli, "old_checkpoint_timeline": data.timeline,
            "old_checkpoint_lsn": data.checkpoint_lsn, "rewindable": data.rewindable and not wrecked,
            "half_rewound_by": wrecked}


def last_written_timeline(ctx: OpContext, site: str, checkpoint_timeline: int) -> int:
    """The timeline the node last wrote on. Its control file names the timeline of its last
    checkpoint, and the checkpoint after a promotion is spread: a primary that dies moments after
    its promotion still names the timeline before it there. Its WAL files (and the history file
    its promotion wrote) carry the new one in their names."""
    wal_dir = posixpath.join(ctx.node(site).data_dir, "pg_wal")
    listing = ctx.transport(site).run(["ls", "-1", wal_dir], timeout=60)
    listing.check(f"listing {wal_dir}")
    return max([checkpoint_timeline, *timelines_in(listing.stdout.split())])


def timelines_in(names: list[str]) -> list[int]:
    """The timelines that WAL segment and history file names carry.

    >>> timelines_in(["000000010000000000000003", "00000002.history", "00000002000000000000000A.partial",
    ...               "archive_status", "000000020000000000000004"])
    [1, 2, 2]
    """
    hexdigits = set("0123456789ABCDEF")
    return [int(name[:8], 16) for name in names
            if (len(name) == 24 or (len(name) == 16 and name.endswith(".history"))) and set(name[:8]) <= hexdigits]

def rewind_job_dir(ctx: OpContext, site: str) -> str:
    return posixpath.join(ctx.service.sites[site].state_dir, f"{ctx.service_name}.rewind")

def half_rewound_by(ctx: OpContext) -> str | None:
    """The operation whose pg_rewind was cut off in this data directory, if one was.

    A pg_rewind that dies while copying leaves a directory PostgreSQL's docs call likely
    unrecoverable (zero-length WAL files, "record with incorrect prev-link"): never rewind it
    again, never count from its WAL; re-clone it."""
    job = detached.status(ctx.transport(ctx.rejoining), rewind_job_dir(ctx, ctx.rejoining))
    if job.owner == ctx.op_id or job.state in ("none",) or (job.state == "done" and job.rc == 0):
        return None
    if job.state == "running":
        raise RefusedError(f"a pg_rewind started by operation {job.owner} still runs at site {ctx.rejoining}",
                           hint=f"let it finish, then `dcctl resume {job.owner}`")
    log = detached.log_tail(ctx.transport(ctx.rejoining), rewind_job_dir(ctx, ctx.rejoining))
    if job.state == "done" and not rewind_touched_target(log):
        return None
    return job.owner or "an earlier rejoin"

def stop_old_primary(ctx: OpContext) -> dict[str, Any]:
    if node_running(ctx, ctx.rejoining):
        return {"stop": stop_node(ctx, ctx.rejoining, "fast")}
    return {"stop": "not running"}

def checkpoint_new_primary(ctx: OpContext) -> dict[str, Any]:
    # pg_rewind reads the source's timeline from its control file, which a just-promoted primary
    # updates only at its first checkpoint.
    ctx.conn(ctx.new_primary).execute(queries.CHECKPOINT)
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
    old_tli = ctx.observed.get("old_timeline") or controldata(ctx, ctx.rejoining).timeline
    conn = ctx.conn(ctx.new_primary)
    tli = one_row(conn.execute(queries.TIMELINE_AND_LSN))["tli"]
    if tli == old_tli:
        return {"fork_lsn": None, "diverged_commits": 0, "divergence": "none: same timeline as the primary",
                "primary_timeline": tli}
    history = one_row(conn.execute(queries.READ_SERVER_FILE,
                           (f"pg_wal/{tli:08X}.history",)))["content"]
    fork = fork_point(parse_history(history), old_tli)
    if fork is None:
        return {"fork_lsn": None, "diverged_commits": None,
                "divergence": f"timeline {old_tli} is not in the primary's history: a re-clone is needed"}
    node = ctx.node(ctx.rejoining)
    segment = wal_segment_name(old_tli, fork, controldata(ctx, ctx.rejoining).wal_segment_size)
    wal_dir = posixpath.join(node.data_dir, "pg_wal")
    listing = ctx.transport(ctx.rejoining).run(["ls", "-1", wal_dir], timeout=60)
    listing.check(f"listing {wal_dir}")
    later = [name for name in listing.stdout.split() if len(name) == 24 and name[:8] == segment[:8]
             and name >= segment]
    if not later:
        # The old primary never wrote into the segment that holds the fork point, nor any after it.
        return {"fork_lsn": fork, "fork_timeline": old_tli, "diverged_commits": 0, "diverged_tables": [],
                "divergence": f"none: {ctx.rejoining} wrote no WAL after the fork at {fork} (timeline {old_tli})"}
    dump = ctx.transport(ctx.rejoining).run(
        tools.pg_waldump(node.bin_dir, wal_dir, old_tli, fork, segment, max(later)),
        timeout=ctx.service.operation.rewind_deadline)
    trouble = waldump_trouble(dump.stderr, fork)
    if trouble and ctx.args.get("allow_reclone"):
        reason = f"its WAL after the fork cannot be read ({trouble})"
        return {"fork_lsn": fork, "fork_timeline": old_tli, "diverged_commits": None, "needs_reclone": reason,
                "divergence": f"not counted: {reason}; the old directory is kept aside by the re-clone"}
    if trouble:
        # Never rewind on a count we cannot trust: the operator must know what will be discarded.
        raise OperationFailed(f"cannot count what the rewind would discard on {ctx.rejoining}: {trouble}",
                              hint="nothing was changed; keep the data directory (copy it aside) and inspect its "
                                   "pg_wal, or re-clone with --allow-reclone after copying it")
    summary = summarize_waldump(dump.stdout)
    tables = relation_names(ctx, summary.relations)
    verdict = (f"{summary.commits} transaction(s) committed on {ctx.rejoining} after the fork at {fork} "
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
    names = []
    conn = ctx.conn(ctx.new_primary)
    databases = {row["oid"]: row["datname"] for row in conn.execute(queries.CONNECTABLE_DATABASES).fetchall()}
    node = ctx.node(ctx.new_primary)
    for db_oid in sorted({db for db, _ in relations}):
        nodes = sorted(rel for db, rel in relations if db == db_oid)
        if db_oid not in databases:
            names += [f"{db_oid}/{rel}" for rel in nodes]
            continue
        with connect(node, "rejoin", ctx.new_primary, dbname=databases[db_oid]) as db:
            found = {row["relfilenode"]: row["name"] for row in db.execute(queries.RELATION_OWNERS, (nodes,))}
        names += [f"{databases[db_oid]}.{found.get(rel, f'relfilenode {rel}')}" for rel in nodes]
    return sorted(set(names))

def keep_diverged(ctx: OpContext) -> dict[str, Any]:
    if not ctx.args.get("keep_diverged") or not ctx.observed.get("diverged_commits"):
        return {"kept_diverged": None}
    node = ctx.node(ctx.rejoining)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = node.data_dir.rstrip("/") + f".dcctl-diverged-{stamp}"
    ctx.transport(ctx.rejoining).run(["cp", "-a", node.data_dir.rstrip("/"), target],
                                       timeout=ctx.service.operation.rewind_deadline).check("copying the diverged data")
    ctx.transport(ctx.rejoining).run(["rm", "-f", posixpath.join(target, "postmaster.pid"),
                                        posixpath.join(target, "standby.signal")], timeout=30)
    return {"kept_diverged": target}

def rewind(ctx: OpContext) -> dict[str, Any]:
    # Irreversible: pg_rewind replaces the old primary's diverged blocks with the new primary's.
    # What it discards was counted by assess_divergence (and kept aside with --keep-diverged).
    # It runs detached at the site (ops/detached.py): a dcctl killed, interrupted or cut off
    # from the site must not take pg_rewind down half-way, which would wreck the directory.
    site, node, primary = ctx.rejoining, ctx.node(ctx.rejoining), ctx.node(ctx.new_primary)
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
    site = ctx.rejoining
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
        raise OperationFailed(f"site {ctx.rejoining} cannot be rewound ({ctx.observed.get('divergence')})",
                              hint="re-clone it with --allow-reclone (the old data directory is kept aside)")
    from dcctl.replication.init import InitPlan, InitRequest, StandbyBuilder, aside_name, observe_target
    from dcctl.plan.step import QuietReporter

    node = ctx.node(ctx.rejoining)
    if node_running(ctx, ctx.rejoining):
        raise OperationFailed(f"PostgreSQL runs at site {ctx.rejoining}: a re-clone needs it stopped")
    request = InitRequest(ctx.service_name, ctx.new_primary, ctx.rejoining, ctx.node(ctx.new_primary), node, True)
    data_dir = node.data_dir.rstrip("/")
    target = observe_target(ctx.transport(ctx.rejoining), node)
    # Run again after a crash, the directory may already be aside: then there is nothing to move.
    aside = aside_name(data_dir, datetime.now(timezone.utc)) if target.data_dir_exists and not target.data_dir_empty \
        else None
    plan = InitPlan(request, standby_conf.slot_name(ctx.rejoining, node), data_dir + ".dcctl-partial",
                    aside, False, True)
    builder = StandbyBuilder(plan, ctx.transport(ctx.new_primary), ctx.transport(ctx.rejoining),
                             ctx.service.operation.stream_deadline)
    steps = [s for s in builder.steps() if s.name not in ("start_standby", "wait_streaming")]
    for step in steps:
        step.action(QuietReporter())
    return {"rewind": "re-cloned" + (f" ({forced})" if forced else ""), "old_data_kept_at": plan.aside_dir}

def create_return_slot(ctx: OpContext) -> None:
    slot = slot_for(ctx, ctx.rejoining)
    ctx.conn(ctx.new_primary).execute(queries.CREATE_PHYSICAL_SLOT, (slot, slot))

def configure_rejoined(ctx: OpContext) -> dict[str, Any]:
    create_return_slot(ctx)
    observed = configure_old_primary_as_standby(ctx)
    detached.clear(ctx.transport(ctx.rejoining), rewind_job_dir(ctx, ctx.rejoining))
    return observed


REJOIN: dict[str, Action] = {
    "preflight": Action(preflight_rejoin, lambda c: f"refuse unless {c.new_primary} is a running primary and "
                        f"{c.rejoining} is reachable and can be rewound (or --allow-reclone)"),
    "prepare": Action(prepare_new_primary, lambda c: "open the connection to the primary", _on("new_primary")),
    "stop_old_primary": Action(stop_old_primary, lambda c: "stop it if it runs (fast)", _on("rejoining")),
    "checkpoint_new_primary": Action(checkpoint_new_primary, lambda c: "CHECKPOINT (pg_rewind needs the new "
                                     "timeline in the control file)", _on("new_primary"),
                                     lambda c: queries.shown(queries.CHECKPOINT)),
    "assess_divergence": Action(assess_divergence, lambda c: "find the fork point; count the commits after it in "
                                "the old primary's WAL (pg_waldump) and the tables they touched", _on("rejoining")),
    "keep_diverged": Action(keep_diverged, lambda c: "with --keep-diverged: copy the data directory aside first "
                            + ("(on)" if c.args.get("keep_diverged") else "(off)"), _on("rejoining")),
    "quarantine_files": Action(quarantine_files, lambda c: "move files changed after the last sync, and unknown to "
                               "the primary, into the store's quarantine folder (listed in the report)",
                               _on("rejoining")),
    "rewind": Action(rewind, lambda c: "pg_rewind from the primary, detached at the site" + (
                     " (or re-clone, --allow-reclone)" if c.args.get("allow_reclone") else ""), _on("rejoining"),
                     irreversible=True),
    "configure_old_primary_as_standby": Action(configure_rejoined, lambda c: f"create slot "
                                               f"{slot_for(c, c.rejoining)} on {c.new_primary}; write "
                                               f"standby.signal and primary_conninfo", _on("rejoining")),
    "start_old_primary": START_OLD_PRIMARY,
    "wait_old_primary_streaming": WAIT_OLD_PRIMARY_STREAMING,
    "record_generation": RECORD_GENERATION,
    "resync_files": Action(resync_files, lambda c: f"reconcile the file stores from {c.new_primary} (guarded; "
                           "replaced files kept in the holding area)", _on("rejoining")),
}
