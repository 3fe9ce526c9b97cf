"""The non-disruptive drill: a throwaway copy of the standby, on a scratch port at the standby
site, started, promoted, verified, timed and removed. Production is untouched: the standby
keeps streaming, no role changes, and the copy never archives or connects anywhere."""
from __future__ import annotations

import posixpath
import random
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

import psycopg
from psycopg.rows import DictRow, tuple_row

from dcctl.drill import pacing
from dcctl.drill.verify import judge
from dcctl.errors import DcctlError, UnreachableError
from dcctl.model import Role
from dcctl.ops.engine import Action, OpContext, OperationFailed
from dcctl.pg.session import one_row
from dcctl.pg import queries, standby_conf, tools
from dcctl.pg.session import connect
from dcctl.status_report import replay_lag_seconds, replay_lag_bytes


DRILL_SLOT = "dcctl_drill"  # on the standby, while an evenly paced copy runs


def site(ctx: OpContext) -> str:
    return ctx.drill_site


def scratch_root(ctx: OpContext) -> str:
    return ctx.service.drill.scratch_dir or posixpath.join(ctx.service.sites[site(ctx)].state_dir, "drill")


def scratch(ctx: OpContext) -> str:
    return posixpath.join(scratch_root(ctx), ctx.op_id)


def copy_dir(ctx: OpContext) -> str:
    return posixpath.join(scratch(ctx), "pgdata")


def connect_copy(ctx: OpContext, dbname: str | None = None, statement_timeout: float | None = None
                 ) -> psycopg.Connection[DictRow]:
    return connect(ctx.node(site(ctx)), "drill", site(ctx), dbname=dbname, port=ctx.service.drill.port,
                   statement_timeout=statement_timeout)


def preflight(ctx: OpContext) -> dict[str, Any]:
    from dcctl.topology import gather_view

    view = gather_view(ctx.config, ctx.service_name, ctx.service)
    standby, primary = view.site(site(ctx)), view.site(ctx.old_primary)
    node = ctx.node(site(ctx))
    if _port_answers(node.host, ctx.service.drill.port):
        raise OperationFailed(f"drill port {ctx.service.drill.port} on {node.host} (site {site(ctx)}) is already in "
                              f"use", hint="a leftover copy? `dcctl drill --cleanup`; else set drill.port")
    if standby.role is not Role.STANDBY:
        raise OperationFailed(f"site {site(ctx)} is not a running standby "
                              f"({standby.postgres_error or standby.role.value})"
                              f": the backup site could not take over now")
    replica = standby.answered()
    observed: dict[str, Any] = {"drill_site": site(ctx), "standby_replay_lsn": replica.replay_lsn,
                                "newest_replayed_commit_at": replica.last_replay_at.isoformat()
                                if replica.last_replay_at else None,
                                "primary_reachable": primary.role is Role.PRIMARY}
    if primary.role is Role.PRIMARY:
        lag = replay_lag_bytes(primary.answered().current_lsn, replica.replay_lsn)
        observed.update(primary_lsn=primary.answered().current_lsn, rpo_bytes=lag,
                        rpo_seconds=replay_lag_seconds(lag, replica))
    return observed


def _port_answers(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def cleanup_leftovers(ctx: OpContext) -> dict[str, Any]:
    """Remove copies left by drills that were killed; each copy's postmaster is stopped first."""
    transport, root = ctx.transport(site(ctx)), scratch_root(ctx)
    listing = transport.run(["find", root, "-mindepth", "1", "-maxdepth", "1", "-type", "d"], timeout=60)
    leftovers = [line for line in listing.stdout.splitlines() if line and line != scratch(ctx)] if listing.ok else []
    for directory in leftovers:
        remove_copy(ctx, directory)
    return {"leftovers_removed": leftovers, "drill_slot_dropped": drop_drill_slot(ctx)}


def remove_copy(ctx: OpContext, directory: str) -> None:
    assert directory.startswith(scratch_root(ctx) + "/")  # never remove anything outside the scratch area
    transport = ctx.transport(site(ctx))
    transport.run(tools.signal_stop(posixpath.join(directory, "pgdata"), "immediate", 60), timeout=70).check(
        "stopping the drill copy")
    transport.run(["rm", "-rf", "--", directory], timeout=600).check("removing the drill copy")


# Runs pg_basebackup ($3...) and the standby's walsender serving it at the lowest CPU priority.
# `nice` alone does nothing where the kernel groups tasks by session (autogroup, on by default in
# Debian): the copy, alone in the session the transport gives it, and the walsender, which
# PostgreSQL puts in a session of its own, would each weigh as much as the primary's backend. So
# each session's autogroup is lowered too (/proc/PID/autogroup; the kernel takes one such write per
# second from an unprivileged user, hence the retries). The walsender is the child of the standby's
# postmaster ($1: its postmaster.pid) whose process title begins with $2 (PostgreSQL cuts the title
# to the length of the postmaster's command line, so the end of the label may be missing). Best
# effort: where autogroups or process titles are off, only `nice` applies.
LOW_PRIORITY_COPY = r'''
pidfile="$1"; title="$2"; shift 2
lower() { renice -n 19 -p "$1" >/dev/null 2>&1
  for _ in 1 2 3 4 5 6 7 8 9 10 11 12; do echo 19 2>/dev/null >"/proc/$1/autogroup" && return; sleep 0.2; done; }
lower $$
"$@" &
copy=$!
postmaster=$(head -n 1 "$pidfile" 2>/dev/null)
for _ in $(seq 50); do
  kill -0 "$copy" 2>/dev/null || break
  for match in $(grep -lF "$title" /proc/[0-9]*/cmdline 2>/dev/null); do
    pid=${match#/proc/}; pid=${pid%/cmdline}
    grep -q "^PPid:[[:space:]]*$postmaster\$" "/proc/$pid/status" 2>/dev/null && { lower "$pid"; break 2; }
  done
  sleep 0.1
done
wait "$copy"
'''


def copy_standby(ctx: OpContext) -> dict[str, Any]:
    node, transport, drill = ctx.node(site(ctx)), ctx.transport(site(ctx)), ctx.service.drill
    transport.run(["mkdir", "-p", scratch(ctx)], timeout=30).check("creating the scratch directory")
    source = tools.conninfo(host=node.host, port=node.port, user=node.replication_user,
                            passfile=node.replication_passfile, application_name="dcctl drill")
    label = f"dcctl drill {ctx.op_id}"
    even = drill.pacing == "even" and drill.max_rate_mb > 0
    started = time.monotonic()
    # A throwaway copy needs no durability: flushing it (here, and again when it starts with fsync
    # on) is what slows the production writer's commits on a shared disk (docs/benchmarks.md). Nor
    # a manifest: nothing verifies it, and the standby would checksum every file for it.
    if even:
        with wal_kept_for_the_copy(ctx):
            _run_low_priority(ctx, pacing.paced_copy(copy_dir(ctx), drill.max_rate_mb * 1024 * 1024,
                                                     tools.pg_basebackup_tar_stream(node.bin_dir, source, label=label)))
    else:
        _run_low_priority(ctx, tools.pg_basebackup(node.bin_dir, copy_dir(ctx), source, None, sync=False,
                                                   max_rate_mb=drill.max_rate_mb, label=label, manifest=False))
    seconds = time.monotonic() - started
    size = transport.run(["du", "-sb", copy_dir(ctx)], timeout=120)
    copied = int(size.stdout.split()[0]) if size.ok else None
    return {"copy_seconds": round(seconds, 3), "copy_bytes": copied, "copy_pacing": "even" if even else "server"}


def _run_low_priority(ctx: OpContext, copy: list[str]) -> None:
    node = ctx.node(site(ctx))
    ctx.transport(site(ctx)).run(
        ["sh", "-c", LOW_PRIORITY_COPY, "sh", posixpath.join(node.data_dir, "postmaster.pid"),
         'sending backup "dcctl drill', *copy],
        timeout=ctx.service.drill.start_deadline * 10).check("pg_basebackup of the standby")


@contextmanager
def wal_kept_for_the_copy(ctx: OpContext) -> Iterator[None]:
    """A tar stream's WAL is fetched from the standby's pg_wal at the end of the copy, and a
    restartpoint meanwhile may remove it: a slot on the standby keeps it from the copy's start
    until the copy ends. A drill killed in between leaves the slot; its resumed rollback
    (undo_cleanup), the next drill's cleanup_leftovers or `dcctl drill --cleanup` drops it."""
    with connect(ctx.node(site(ctx)), "drill", site(ctx)) as conn:
        conn.execute(queries.CREATE_PHYSICAL_SLOT_RESERVED, (DRILL_SLOT, DRILL_SLOT))
    try:
        yield
    finally:
        drop_drill_slot(ctx)


def drop_drill_slot(ctx: OpContext) -> bool:
    """Drops the copy's slot if it is there (and no copy streams from it); True if it was."""
    with connect(ctx.node(site(ctx)), "drill", site(ctx)) as conn:
        return bool(conn.execute(queries.DROP_INACTIVE_SLOT, (DRILL_SLOT,)).fetchall())


def start_copy(ctx: OpContext) -> dict[str, Any]:
    # The copy must stay a private island: its own port and socket directory, no archiving (it
    # would write into production's archive), no upstream, and standby.signal so that its
    # promotion is the step we time.
    node, transport, directory = ctx.node(site(ctx)), ctx.transport(site(ctx)), copy_dir(ctx)
    auto_conf = posixpath.join(directory, "postgresql.auto.conf")
    try:
        current = transport.read_file(auto_conf).decode()
    except DcctlError:
        current = ""
    settings = {"port": str(ctx.service.drill.port), "listen_addresses": node.host, "archive_mode": "off",
                "primary_conninfo": "", "primary_slot_name": "", "restore_command": "",
                "unix_socket_directories": "", "cluster_name": "dcctl-drill", "hot_standby": "on",
                "fsync": "off"}
    transport.write_file(auto_conf, standby_conf.update_auto_conf(current, settings).encode(), mode=0o600)
    transport.write_file(posixpath.join(directory, "standby.signal"), b"", mode=0o600)
    started = time.monotonic()
    log = posixpath.join(scratch(ctx), "postgresql.log")
    transport.run(tools.pg_ctl_start_nowait(node.bin_dir, directory, log), timeout=60).check("starting the drill copy")

    def accepting() -> bool:
        try:
            return _in_recovery(ctx) is True
        except (psycopg.Error, UnreachableError):
            if time.monotonic() - started > 0.5 and not transport.exists(
                    posixpath.join(directory, "postmaster.pid")):
                tail = transport.run(["tail", "-n", "5", log], timeout=30).stdout.strip()
                raise StopPolling(f"the drill copy exited while starting: {tail}")
            raise

    wait(ctx, "the drill copy accepting connections", accepting)
    return {"start_seconds": round(time.monotonic() - started, 3), "start_began_at": time.time() -
            (time.monotonic() - started)}


def _in_recovery(ctx: OpContext) -> bool:
    with connect_copy(ctx) as conn:
        return one_row(conn.execute(queries.IN_RECOVERY))["in_recovery"]


class StopPolling(OperationFailed):
    """A failure that waiting longer cannot cure."""


def wait(ctx: OpContext, what: str, probe) -> None:
    from dcctl.ops.steps.common import poll

    poll(what, ctx.service.drill.start_deadline, probe, interval=0.02,
         hint=f"see {posixpath.join(scratch(ctx), 'postgresql.log')} at site {site(ctx)}")


def promote_copy(ctx: OpContext) -> dict[str, Any]:
    started = time.monotonic()
    with connect_copy(ctx) as conn:
        if one_row(conn.execute(queries.IN_RECOVERY))["in_recovery"]:
            conn.execute(queries.PROMOTE)
    wait(ctx, "the drill copy accepting writes", lambda: _in_recovery(ctx) is False)
    promote_seconds = time.monotonic() - started
    rto = (ctx.observed.get("start_seconds") or 0) + promote_seconds
    return {"promote_seconds": round(promote_seconds, 3), "rto_seconds": round(rto, 3), "ready_at": time.time()}


def verify(ctx: OpContext) -> dict[str, Any]:
    # The operator's checks may scan whole tables of the throwaway copy: no statement timeout.
    results = sql_results(ctx, lambda dbname: connect_copy(ctx, dbname, statement_timeout=0)) + file_results(ctx)
    return {"checks": results, "checks_failed": [r["name"] for r in results if not r["passed"]]}


def sql_results(ctx: OpContext, connect) -> list[dict[str, Any]]:
    primary_now = _primary_now(ctx)
    results = []
    for check in ctx.service.drill.sql_checks:
        dbname = check.database or ctx.service.database or ctx.node(site(ctx)).dbname
        started = time.monotonic()
        try:
            with connect(dbname) as conn:
                row = conn.cursor(row_factory=tuple_row).execute(check.query).fetchone()
            passed, detail = judge(check, row[0] if row else None, primary_now)
        except (psycopg.Error, DcctlError) as exc:
            passed, detail = False, f"{check.name}: {str(exc).strip().splitlines()[0]}"
        results.append({"name": check.name, "kind": "sql", "passed": passed, "detail": detail,
                        "seconds": round(time.monotonic() - started, 3)})
    return results


def _primary_now(ctx: OpContext) -> datetime:
    try:
        return one_row(ctx.conn(ctx.old_primary).execute(queries.SERVER_NOW))["now"]
    except (DcctlError, psycopg.Error):
        return datetime.now(timezone.utc)


def file_results(ctx: OpContext) -> list[dict[str, Any]]:
    """A sample of each store's files, compared by SHA-256 between the primary's and this site's copy."""
    results = []
    here, there = ctx.service.sites[site(ctx)], ctx.service.sites[ctx.old_primary]
    for store, primary_path in sorted(there.file_stores.items()):
        local_path = here.file_stores.get(store)
        if local_path is None:
            continue
        listing = ctx.transport(ctx.old_primary).run(["find", primary_path, "-type", "f", "-printf", "%P\\0"],
                                                     timeout=600)
        names = [n for n in listing.stdout.split("\0") if n] if listing.ok else []
        sample = names if ctx.service.drill.file_sample == 0 else \
            random.sample(names, min(len(names), ctx.service.drill.file_sample))
        if not sample:
            results.append({"name": f"files:{store}", "kind": "files", "passed": listing.ok,
                            "detail": f"{store}: no files to compare" if listing.ok else
                            f"{store}: cannot list {primary_path}: {listing.stderr.strip()}"})
            continue
        ours = _digests(ctx, site(ctx), local_path, sample)
        theirs = _digests(ctx, ctx.old_primary, primary_path, sample)
        differ = sorted(name for name in sample if ours.get(name) != theirs.get(name))
        detail = f"{store}: {len(sample) - len(differ)} of {len(sample)} sampled files identical"
        if differ:
            detail += f"; differ or missing: {', '.join(differ[:10])}" + (" ..." if len(differ) > 10 else "")
        results.append({"name": f"files:{store}", "kind": "files", "passed": not differ, "detail": detail})
    return results


def _digests(ctx: OpContext, at: str, root: str, names: list[str]) -> dict[str, str]:
    result = ctx.transport(at).run(["sha256sum", "-z", "--", *[posixpath.join(root, n) for n in names]], timeout=3600)
    digests = {}
    for entry in result.stdout.split("\0"):
        if entry:
            digest, _, path = entry.partition("  ")
            digests[posixpath.relpath(path, root)] = digest
    return digests


def verdict(ctx: OpContext) -> dict[str, Any]:
    failed = ctx.observed.get("checks_failed") or []
    if failed:
        details = [c["detail"] for c in ctx.observed.get("checks", []) if not c["passed"]]
        raise OperationFailed(f"drill verification failed: {'; '.join(details)}")
    return {"verdict": "passed"}


def cleanup(ctx: OpContext) -> dict[str, Any]:
    started = time.monotonic()
    if ctx.transport(site(ctx)).run(["test", "-d", scratch(ctx)], timeout=30).ok:
        remove_copy(ctx, scratch(ctx))
    ctx.transport(site(ctx)).run(["rmdir", "--ignore-fail-on-non-empty", "--", scratch_root(ctx)], timeout=30)
    return {"cleanup_seconds": round(time.monotonic() - started, 3)}


def undo_cleanup(ctx: OpContext) -> None:
    """Also the slot: a copy cut off (a drill killed, then resumed) never dropped it itself."""
    cleanup(ctx)
    drop_drill_slot(ctx)


def _on_drill_site(ctx: OpContext) -> str:
    return site(ctx)


DRILL: dict[str, Action] = {
    "preflight": Action(preflight, lambda c: f"{c.new_primary} must be a running standby; note its replay "
                        f"position against the primary's (RPO)"),
    "cleanup_leftovers": Action(cleanup_leftovers, lambda c: f"remove copies left in {scratch_root(c)} by "
                                f"interrupted drills", _on_drill_site),
    "copy_standby": Action(copy_standby, lambda c: f"pg_basebackup of the standby into {copy_dir(c)}",
                           _on_drill_site, undo=undo_cleanup),
    "start_copy": Action(start_copy, lambda c: f"start the copy on port {c.service.drill.port} (no archiving, no "
                         f"upstream), as a standby", _on_drill_site, undo=undo_cleanup),
    "promote_copy": Action(promote_copy, lambda c: "promote the copy; time to ready = start + promote (RTO)",
                           _on_drill_site, undo=undo_cleanup),
    "verify": Action(verify, lambda c: f"{len(c.service.drill.sql_checks)} SQL check(s) on the copy; file stores "
                     f"sampled ({c.service.drill.file_sample or 'all'} files) against the primary's",
                     _on_drill_site, undo=undo_cleanup),
    "cleanup": Action(cleanup, lambda c: f"stop the copy and remove {scratch(c)}", _on_drill_site),
    "verdict": Action(verdict, lambda c: "pass only if every check passed"),
}
