"""The file-store steps of switchover, failover and rejoin. Each is a no-op for a service
without file stores, and observes before it acts, so a resumed operation may run it twice.

- switchover `final_file_sync` (writes have stopped, before promotion): push what changed at the
  old primary since its last full reconciliation, then compare both sites over exactly those
  entries; a difference left fails the step, and the switchover is rolled back. After promotion
  the new primary's agent pushes the other way by itself (it sees its role change).
- failover `record_file_sync` (before fencing): what the surviving site last received, for the
  report: files written at the old primary after that time may be missing.
- rejoin `quarantine_files` (before the rewind): files at the old primary that changed after the
  last successful sync and that the new primary does not hold identically are moved to a
  quarantine folder at that site and listed in the report, never deleted; `resync_files` (last)
  then makes the old primary's stores follow the new primary (a guarded full reconciliation).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from dcctl.errors import DcctlError, RefusedError
from dcctl.ops.engine import OpContext, OperationFailed

LISTED = 1000  # paths named in a report, per store


def _stores(ctx: OpContext, source: str, target: str) -> list[str]:
    there = ctx.service.sites[target].file_stores
    return sorted(name for name in ctx.service.sites[source].file_stores if name in there)


def _pair(ctx: OpContext, store: str, source: str, target: str):
    from dcctl.filesync.engine import StorePair

    return StorePair(ctx.service_name, store, source, target, ctx.service.sites[source], ctx.service.sites[target],
                     ctx.service.filesync, ctx.transport(source), ctx.transport(target), f"op-{ctx.op_id[-12:]}")


def shown_name(path: str) -> str:
    """A file name as reports and journals show it: readable UTF-8 as is; a backslash, a control
    character or a byte that is not UTF-8 as \\xNN (a backslash as \\\\), so that every name can be
    written as text and turned back into its exact bytes (bash's `printf '%b'` does it).

    >>> shown_name("q/é.txt"), shown_name("q/bad\\udcffname"), shown_name("a\\\\b\\nc")
    ('q/é.txt', 'q/bad\\\\xffname', 'a\\\\\\\\b\\\\x0ac')
    """
    raw = path.encode("utf-8", "surrogateescape").replace(b"\\", b"\\\\")
    text = raw.decode("utf-8", "backslashreplace")
    return "".join(f"\\x{ord(char):02x}" if ord(char) < 0x20 or ord(char) == 0x7f else char for char in text)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


# ---- switchover -----------------------------------------------------------------------------------

def final_file_sync(ctx: OpContext) -> dict[str, Any]:
    source, target = ctx.old_primary, ctx.new_primary
    stores = _stores(ctx, source, target)
    if not stores:
        return {"final_file_sync": "no file stores"}
    report = {}
    for store in stores:
        pair = _pair(ctx, store, source, target)
        try:
            # The old primary's agent may not notice the new roles for a while; meanwhile the new
            # primary's agent puts files into the store it watches. It must push no more from now.
            # An agent rsync already running ends first: waited for as long as the replay may take.
            pair.hand_over(ctx.observed["shutdown_timeline"], ctx.op_id, wait=ctx.service.operation.replay_deadline)
            report[store] = _final_sync_store(ctx, pair)
        finally:
            pair.close()
    return {"final_file_sync": report,
            "file_sync_direction": f"{target}'s agent pushes to {source} once {target} is primary"}


def undo_final_file_sync(ctx: OpContext) -> None:
    """The old primary stays the primary: its agent pushes again."""
    for store in _stores(ctx, ctx.old_primary, ctx.new_primary)[:1]:  # the mark is one per service
        _pair(ctx, store, ctx.old_primary, ctx.new_primary).take_back()


def _final_sync_store(ctx: OpContext, pair) -> dict[str, Any]:
    from dcctl.filesync import manifest
    from dcctl.filesync.engine import read_run, read_status
    from dcctl.filesync.state import reconciled_since

    started = time.time()
    since = reconciled_since(read_status(pair.source, pair.source_cfg.state_dir, pair.service),
                             read_run(pair.source, pair.source_cfg.state_dir, pair.service, pair.store), pair.store)
    sent = deleted = 0
    if since is None:
        # No reconciliation is known: compare everything; sync everything if anything differs.
        scope = "the whole store (no earlier reconciliation is recorded)"

        def differences():
            from dcctl.parallel import run_all

            sides = run_all({"a": lambda: manifest.build(pair.source, pair.source_dir),
                             "b": lambda: manifest.build(pair.target, pair.target_dir)},
                            deadline=pair.settings.reconcile_timeout)
            for side in sides.values():
                if not side.ok:
                    raise side.error or OperationFailed(f"listing store {pair.store} did not finish in time")
            return pair.compare(sides["a"].value, sides["b"].value)

        found = differences()
        checked = None
        if found:
            preview = pair.preview()
            result = pair.reconcile(preview)  # raises MassDeleteRefused (the switchover rolls back)
            sent, deleted = result.stats.files_transferred, result.stats.deleted
            found = differences()
    else:
        scope = f"entries changed since {_iso(since)} (the last full reconciliation)"
        changed = pair.changed_since(since)
        dirs = [path for kind, path in changed if kind == "d"]
        files = [path for kind, path in changed if kind != "d"]
        checked = len(changed)
        found = pair.scope_differences(dirs + files, []) if changed else []
        if found:
            pair.ensure_dirs()
            result, created = pair.scoped_sync(dirs, files)
            sent, deleted = result.stats.files_transferred, result.stats.deleted
            found = pair.scope_differences(dirs + files, created)
    if found:
        shown = "; ".join(str(d) for d in found[:5])
        raise OperationFailed(f"store {pair.store} still differs between {pair.source_site} and {pair.target_site} "
                              f"after the final sync ({len(found)} difference(s): {shown})",
                              hint="writes to the store must stop before the switchover (before_switch hook)")
    if sent or deleted:
        pair.write_run(started, "ok", f"{sent} file(s) sent, {deleted} deleted", f"switchover {ctx.op_id}")
    return {"scope": scope, "entries_checked": checked, "files_sent": sent, "deleted": deleted,
            "verified": "identical", "seconds": round(time.time() - started, 3)}


# ---- failover -------------------------------------------------------------------------------------

def record_file_sync(ctx: OpContext) -> dict[str, Any]:
    from dcctl.filesync.engine import read_receipt, read_status

    source, target = ctx.old_primary, ctx.new_primary
    stores = _stores(ctx, source, target)
    if not stores:
        return {"file_sync": "no file stores"}
    synced, pending = {}, {}
    for store in stores:
        try:
            receipt = read_receipt(ctx.transport(target), ctx.service.sites[target].state_dir, ctx.service_name, store)
        except DcctlError:
            receipt = None
        synced[store] = _iso(receipt.synced_through) if receipt else None
    handed_over = None
    if ctx.observed.get("old_primary_reachable"):
        try:
            status = read_status(ctx.transport(source), ctx.service.sites[source].state_dir, ctx.service_name)
            for store in stores:
                if status and store in status.stores:
                    pending[store] = status.stores[store].pending
        except DcctlError:
            pass
        handed_over = _hand_over_if_possible(ctx, stores, source, target)
    parts = [f"{store}: files written at {source} after {when or 'an unknown time (no sync recorded)'} may not "
             f"have reached {target}" for store, when in synced.items()]
    return {"files_synced_through": synced, "files_pending_at_old_primary": pending or None,
            "file_sync_handed_over": handed_over,
            "file_sync_verdict": "; ".join(parts) + "; `dcctl rejoin` quarantines them at " + source}


FAILOVER_HAND_OVER_WAIT = 2.0  # seconds: a failover does not wait long for a failing site's rsync


def _hand_over_if_possible(ctx: OpContext, stores: list[str], source: str, target: str) -> str:
    """A reachable old primary's agent pushes no more (as in a switchover), so that it cannot
    delete at the new primary what is written there after the promotion. Best effort: the
    failover goes on whatever happens here; its own fencing stops the old primary anyway."""
    timeline = ctx.observed.get("timeline_before")
    if timeline is None:
        return "not attempted: the standby's timeline before promotion is unknown"
    try:
        for store in stores:
            _pair(ctx, store, source, target).hand_over(timeline, ctx.op_id, wait=FAILOVER_HAND_OVER_WAIT)
    except DcctlError as exc:
        ctx.say(f"file sync not handed over at {source}: {exc.message}")
        return f"not done: {exc.message}"
    return f"the agent at {source} pushes no more while it stays on timeline {timeline}"


# ---- rejoin ---------------------------------------------------------------------------------------

def quarantine_files(ctx: OpContext) -> dict[str, Any]:
    from dcctl.filesync.engine import read_receipt

    old, new = ctx.old_primary, ctx.new_primary
    stores = _stores(ctx, old, new)
    if not stores:
        return {"quarantine": "no file stores"}
    tag = ctx.op_id
    report: dict[str, dict[str, Any]] = {}
    for store in stores:
        # The pair runs "backwards" (old -> new) only to list and compare; nothing is pushed.
        pair = _pair(ctx, store, old, new)
        receipt = read_receipt(ctx.transport(new), ctx.service.sites[new].state_dir, ctx.service_name, store)
        since = receipt.synced_through if receipt and receipt.source_site == old else None
        if receipt is not None and receipt.source_site != old:
            since = receipt.last_reconcile_at  # the last time the two were known equal
        paths = pair.quarantine_candidates(since)
        directory = pair.quarantine(paths, tag) if paths else None
        report[store] = {"changed_after": _iso(since) or "unknown (no sync recorded: every file was compared)",
                         "count": len(paths), "directory": directory and f"{old}:{directory}",
                         "files": [shown_name(p) for p in paths[:LISTED]]}
        if paths:
            ctx.say(f"store {store}: {len(paths)} file(s) changed at {old} after the last sync, moved to {directory}")
    count = sum(r["count"] for r in report.values())
    return {"quarantined_files": report, "quarantine_verdict":
            (f"{count} file(s) written at {old} after the last sync were moved to its quarantine folder(s) and are "
             f"listed here; copy back into the primary's store what must survive") if count else
            f"no file at {old} changed after the last sync"}


def resync_files(ctx: OpContext) -> dict[str, Any]:
    """The rejoined site's stores follow the new primary: one guarded full reconciliation."""
    source, target = ctx.new_primary, ctx.old_primary
    stores = _stores(ctx, source, target)
    if not stores:
        return {"resync_files": "no file stores"}
    report = {}
    for store in stores:
        pair = _pair(ctx, store, source, target)
        started = time.time()
        try:
            preview = pair.preview()
            if not preview.verdict.allowed:
                pair.write_run(started, "refused", preview.verdict.reason, f"rejoin {ctx.op_id}")
                report[store] = f"refused: {preview.verdict.reason}"
                continue
            result = pair.reconcile(preview)
            pair.write_run(result.started_at, "ok", f"{result.stats.files_transferred} file(s) sent, "
                                                    f"{result.stats.deleted} deleted", f"rejoin {ctx.op_id}")
            pair.write_receipt(result.started_at, result.started_at)
            report[store] = (f"{result.stats.files_transferred} file(s) sent, {result.stats.deleted} replaced or "
                             f"deleted entries kept in {target}'s holding area")
        except RefusedError as exc:
            report[store] = f"refused: {exc.message}"
        finally:
            pair.close()
    return {"resync_files": report}
