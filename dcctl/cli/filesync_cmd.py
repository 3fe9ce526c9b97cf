"""dcctl filesync status | run | verify: the file stores, mirrored from the primary site.

The direction is always the same: the site whose PostgreSQL is the one primary pushes to the
other. `run` and `verify` run rsync and find at the sites through their transports, exactly as
the agent does on the primary site.
"""
from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

import click

from dcctl.cli.complete import complete_services
from dcctl.cli.context import Context, output_option
from dcctl.cli.output import console, human_bytes, print_json
from dcctl.errors import DcctlError, ExitCode, RefusedError

service_option = click.option("-s", "--service", "service_name", shell_complete=complete_services,
                              metavar="NAME", help="The service (needed when there are several).")
store_option = click.option("--store", "store_name", metavar="NAME", help="Only this file store [default: all].")


@click.group()
def filesync() -> None:
    """File-store sync from the primary site to the other: status, run, verify."""


# ---- shared -------------------------------------------------------------------------------------

def _direction(cli: Context, service_name: str | None):
    from dcctl.filesync.decide import direction_from_view
    from dcctl.topology import gather_view

    config = cli.config
    name, service = config.service(service_name)
    view = gather_view(config, name, service)
    source, target, why = direction_from_view(view)
    return name, service, view, source, target, why


def _pairs(name, service, source, target, store_name):
    from dcctl.filesync.engine import StorePair, cli_tag
    from dcctl.transport import open_transport

    stores = sorted(service.sites[source].file_stores)
    if store_name is not None:
        if store_name not in stores:
            raise RefusedError(f"no file store named {store_name!r} at site {source}; stores: "
                               f"{', '.join(stores) or 'none'}")
        stores = [store_name]
    if not stores:
        raise RefusedError(f"service {name} has no file stores at site {source}")
    transports = (open_transport(source, service.sites[source]), open_transport(target, service.sites[target]))
    return [StorePair(name, store, source, target, service.sites[source], service.sites[target], service.filesync,
                      *transports, cli_tag()) for store in stores]


def _when(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    return f"{datetime.fromtimestamp(ts, timezone.utc).strftime('%Y-%m-%d %H:%M:%S')}Z ({now - ts:.0f} s ago)"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


# ---- status -------------------------------------------------------------------------------------

@filesync.command()
@service_option
@output_option
@click.pass_obj
def status(cli: Context, service_name: str | None) -> None:
    """Per store: direction, lag, pending, last batch, last reconciliation, holding area.

    Reads what the pushing agent records at the primary site and the receipt at the other
    site; exits 0 whenever that could be shown (`dcctl check` has the alerting exit codes).
    """
    from dcctl.filesync import holding
    from dcctl.filesync.engine import read_receipt, read_run, read_status
    from dcctl.transport import open_transport

    config = cli.config
    names = [config.service(service_name)[0]] if service_name else list(config.services)
    reports = []
    now = time.time()
    for name in names:
        _, service, view, source, target, why = _direction(cli, name)
        entry = {"service": name, "source": source, "target": target, "direction": why, "stores": []}
        if source is None:
            reports.append(entry)
            continue
        src, dst = open_transport(source, service.sites[source]), open_transport(target, service.sites[target])
        try:
            agent = read_status(src, service.sites[source].state_dir, name)
            for store in sorted(service.sites[source].file_stores):
                s = agent.stores.get(store) if agent else None
                receipt = read_receipt(dst, service.sites[target].state_dir, name, store)
                run = read_run(src, service.sites[source].state_dir, name, store)
                held = holding.size(dst, service.sites[target].state_dir, name, store)
                fresh = agent is not None and now - agent.updated_at <= 30
                entry["stores"].append({
                    "store": store, "source": f"{source}:{service.sites[source].file_stores[store]}",
                    "target": f"{target}:{service.sites[target].file_stores.get(store, '?')}",
                    "agent": ("pushing" if agent.active else f"paused: {agent.decision}") if fresh else
                    ("not reporting since " + _iso(agent.updated_at) if agent else "no status (agent not running?)"),
                    "lag_seconds": round(s.lag(now), 3) if s and fresh else None,
                    "pending": s.pending if s and fresh else None,
                    "blocked": s.blocked if s else None,
                    "last_error": s.last_error if s else None,
                    "last_batch_at": _iso(s.last_batch_at) if s else None,
                    "last_reconcile_at": _iso(max(filter(None, [s.last_reconcile_finished_at if s else None,
                                                                run.finished_at if run and run.outcome == "ok"
                                                                else None]), default=None)),
                    "last_operator_run": {"at": _iso(run.started_at), "outcome": run.outcome, "detail": run.detail,
                                          "by": run.by} if run else None,
                    "synced_through": _iso(receipt.synced_through) if receipt else None,
                    "holding_bytes": held[0] if held else 0, "holding_files": held[1] if held else 0,
                    "watch_problem": s.watch_problem if s else None,
                })
        finally:
            src.close()
            dst.close()
        reports.append(entry)
    if cli.output == "json":
        print_json({"services": reports})
        return
    _render_status(reports)


def _render_status(reports: list[dict]) -> None:
    from rich.table import Table

    out = console()
    for report in reports:
        table = Table(title=f"service {report['service']}: {report['direction']}", title_justify="left")
        for column in ("store", "direction", "agent", "lag", "pending", "last batch", "last reconcile",
                       "synced through", "holding"):
            table.add_column(column, overflow="fold")
        for s in report["stores"]:
            agent = s["agent"] if s["agent"] == "pushing" else f"[yellow]{s['agent']}[/]"
            lag = "-" if s["lag_seconds"] is None else f"{s['lag_seconds']:.1f} s"
            table.add_row(s["store"], f"{report['source']} -> {report['target']}", agent, lag,
                          "-" if s["pending"] is None else str(s["pending"]), s["last_batch_at"] or "never",
                          s["last_reconcile_at"] or "never", s["synced_through"] or "unknown",
                          f"{human_bytes(s['holding_bytes'])} in {s['holding_files']} file(s)")
        out.print(table)
        for s in report["stores"]:
            for label, problem in (("BLOCKED", s["blocked"]), ("last error", s["last_error"]),
                                   ("watch", s["watch_problem"])):
                if problem:
                    out.print(f"[red]{s['store']} {label}:[/] {problem}", soft_wrap=True)


# ---- run ------------------------------------------------------------------------------------------

@filesync.command()
@service_option
@store_option
@click.option("--allow-mass-delete", is_flag=True, help="Apply deletions beyond filesync.mass_delete_share of the "
                                                        "receiving store (they still go to its holding area).")
@click.option("--dry-run", is_flag=True, help="Print what the reconciliation would do and change nothing.")
@click.option("--progress/--no-progress", "show_progress", default=None,
              help="Draw a progress bar [default: when stderr is a terminal]. rsync then reports every file, "
                   "which costs a few percent of a large first sync.")
@output_option
@click.pass_obj
def run(cli: Context, service_name: str | None, store_name: str | None, allow_mass_delete: bool,
        dry_run: bool, show_progress: bool | None) -> None:
    """One full reconciliation now, from the primary site to the other, with a progress bar.

    First a dry run counts what would be sent and deleted; a run that would delete more than
    filesync.mass_delete_share of the receiving store is refused (exit 5) unless
    --allow-mass-delete. What the receiving side loses is moved to its holding area.
    """
    from dcctl.cli.confirm import confirm
    from dcctl.filesync.engine import MassDeleteRefused

    name, service, _view, source, target, why = _direction(cli, service_name)
    if source is None:
        raise RefusedError(f"file sync of {name} refused: {why}", hint="dcctl status shows the roles")
    pairs = _pairs(name, service, source, target, store_name)
    results = []
    try:
        previews = [pair.preview(allow_mass_delete=allow_mass_delete) for pair in pairs]
        _show_plan(pairs, previews, dry_run)
        refused = [(p, pr) for p, pr in zip(pairs, previews) if not pr.verdict.allowed]
        if dry_run:
            return
        for pair, preview in refused:
            pair.write_run(time.time(), "refused", preview.verdict.reason, "dcctl filesync run")
        if refused:
            raise MassDeleteRefused(refused[0][0].store, refused[0][1].verdict)
        confirm(f"Reconcile {len(pairs)} store(s) of {name} from {source} to {target}?", cli.assume_yes)
        if show_progress is None:
            show_progress = sys.stderr.isatty()
        for pair, preview in zip(pairs, previews):
            results.append(_reconcile(pair, preview, allow_mass_delete, show_progress))
    finally:
        for pair in pairs:
            pair.close()
    if cli.output == "json":
        print_json({"service": name, "source": source, "target": target, "stores": results})
    else:
        for r in results:
            click.echo(f"store {r['store']}: {r['files_transferred']} file(s), {human_bytes(r['bytes_transferred'])} "
                       f"sent, {r['deleted']} deleted (kept in {target}'s holding area) in {r['seconds']:.2f} s")


def _show_plan(pairs, previews, dry_run: bool) -> None:
    err = not dry_run
    for pair, p in zip(pairs, previews):
        what = ("the receiving store is empty: everything is copied" if p.receiver_empty else
                f"{p.stats.created} entries to create, {p.stats.files_transferred} file(s) to send "
                f"({human_bytes(p.stats.bytes_transferred)}), {p.stats.deleted} to delete (into the holding area)")
        click.echo(f"store {pair.store}: {pair.describe()}: {what}", err=err)
        for path in p.deletions[:20]:
            click.echo(f"  delete {path}", err=err)
        if len(p.deletions) > 20:
            click.echo(f"  ... and {p.stats.deleted - 20} more", err=err)
        mark = "" if p.verdict.allowed else "REFUSED: "
        click.echo(f"  guard: {mark}{p.verdict.reason}", err=err)


def _reconcile(pair, preview, allow_mass_delete: bool, show_progress: bool) -> dict:
    import contextlib

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    started = time.time()
    bar = Progress(TextColumn(f"{pair.store}"), BarColumn(), MofNCompleteColumn(), TextColumn("entries"),
                   TextColumn("{task.fields[sent]}"), TimeElapsedColumn(), console=Console(stderr=True),
                   transient=False)
    task = bar.add_task("sync", total=None, sent="")

    def progress(sent: int, checked: int, known: int) -> None:
        bar.update(task, completed=checked, total=known or None, sent=human_bytes(sent))

    try:
        with bar if show_progress else contextlib.nullcontext():
            result = pair.reconcile(preview, allow_mass_delete=allow_mass_delete,
                                    progress=progress if show_progress else None)
    except DcctlError as exc:
        pair.write_run(started, "refused" if isinstance(exc, RefusedError) else "failed", exc.message,
                       "dcctl filesync run")
        raise
    detail = (f"{result.stats.files_transferred} file(s), {result.stats.bytes_transferred} bytes sent, "
              f"{result.stats.deleted} deleted")
    pair.write_run(result.started_at, "ok", detail, "dcctl filesync run" + (" --allow-mass-delete"
                                                                           if allow_mass_delete else ""))
    pair.write_receipt(result.started_at, result.started_at)
    pair.prune_holding()
    return {"store": pair.store, "files_transferred": result.stats.files_transferred,
            "bytes_transferred": result.stats.bytes_transferred, "deleted": result.stats.deleted,
            "entries": result.stats.entries, "seconds": round(result.seconds, 3), "rsync_rc": result.rc}


# ---- verify -------------------------------------------------------------------------------------

@filesync.command()
@service_option
@store_option
@click.option("--checksum", is_flag=True, help="Also compare the SHA-256 of every file (reads every byte at both "
                                               "sites).")
@click.option("--limit", type=int, default=50, show_default=True, help="Differences shown per store (table output).")
@output_option
@click.pass_obj
def verify(cli: Context, service_name: str | None, store_name: str | None, checksum: bool, limit: int) -> None:
    """Compare the stores of both sites: type, size, mtime (ns), mode, owner, group, link
    targets, and with --checksum the content; exit 1 when they differ.

    On a live store, changes still in flight show up as differences: run it when writes are
    quiet, or again.
    """
    from dcctl.filesync import manifest
    from dcctl.parallel import run_all

    name, service, _view, source, target, why = _direction(cli, service_name)
    if source is None:
        raise RefusedError(f"cannot tell which site is the source: {why}")
    pairs = _pairs(name, service, source, target, store_name)
    reports = []
    for pair in pairs:
        outcomes = run_all({
            "source": lambda p=pair: manifest.build(p.source, p.source_dir, checksum=checksum),
            "target": lambda p=pair: manifest.build(p.target, p.target_dir, checksum=checksum),
        }, deadline=service.filesync.reconcile_timeout)
        for outcome in outcomes.values():
            if outcome.error is not None:
                raise outcome.error
            if outcome.timed_out:
                raise DcctlError(f"listing store {pair.store} did not finish in time")
        a, b = outcomes["source"].value, outcomes["target"].value
        differences = pair.compare(a, b)
        reports.append({"store": pair.store, "source": f"{source}:{pair.source_dir}",
                        "target": f"{target}:{pair.target_dir}", "entries": len(a), "checksum": checksum,
                        "differences": [{"path": d.path, "what": d.what} for d in differences]})
    for pair in pairs:
        pair.close()
    if cli.output == "json":
        print_json({"service": name, "stores": reports})
    else:
        for r in reports:
            verdict = "identical" if not r["differences"] else f"{len(r['differences'])} difference(s)"
            click.echo(f"store {r['store']}: {r['source']} vs {r['target']}: {r['entries']} entries, {verdict}"
                       + (" (content compared)" if checksum else ""))
            for d in r["differences"][:limit]:
                click.echo(f"  {d['path']!r}: {d['what']}")
            if len(r["differences"]) > limit:
                click.echo(f"  ... and {len(r['differences']) - limit} more (-o json lists them all)")
    if any(r["differences"] for r in reports):
        sys.exit(int(ExitCode.FAILED))
