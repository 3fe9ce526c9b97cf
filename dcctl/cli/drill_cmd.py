"""dcctl drill: prove the backup site can take over.

non-disruptive (default): a throwaway copy of the standby is promoted and verified, then removed.
full: a real switchover to the backup site, verification, an optional dwell, and a switchover back.
"""
from __future__ import annotations

import sys
import time

import click

from dcctl.cli.main import Context, output_option
from dcctl.cli.ops_cmd import build_context, execute, roles_from_view, say, service_option
from dcctl.cli.output import print_json
from dcctl.errors import RefusedError


@click.command()
@service_option
@click.option("--mode", type=click.Choice(["non-disruptive", "full"]), default="non-disruptive", show_default=True)
@click.option("--cleanup", "cleanup_only", is_flag=True, help="Only remove copies left by interrupted drills.")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@output_option
@click.pass_obj
def drill(cli: Context, service_name, mode, cleanup_only, dry_run) -> None:
    """Run a drill and leave a report (JSON and HTML) in the state directory."""
    primary, standby = roles_from_view(cli, service_name, None)
    name, service = cli.config.service(service_name)
    drill_site = service.drill.site or standby
    if drill_site not in service.sites:
        raise RefusedError(f"drill.site {drill_site!r} is not a site of {name}")
    if cleanup_only:
        from dcctl.drill.actions import cleanup_leftovers

        ctx = build_context(cli, "drill", service_name, primary, drill_site, {"mode": "cleanup"})
        removed = cleanup_leftovers(ctx)["leftovers_removed"]
        ctx.close()
        click.echo(f"removed {len(removed)} leftover drill cop{'y' if len(removed) == 1 else 'ies'}"
                   + "".join(f"\n  {path}" for path in removed))
        return
    if mode == "full":
        run_full_drill(cli, service_name, primary, standby, dry_run)
        return
    ctx = build_context(cli, "drill", service_name, primary, drill_site, {"mode": "non-disruptive"})
    execute(cli, ctx, dry_run=dry_run, break_lock=False, question=f"Run a non-disruptive drill at {drill_site}?")


def run_full_drill(cli: Context, service_name, primary: str, standby: str, dry_run: bool) -> None:
    """Switch over to the backup site and back, verifying in between, under one drill record."""
    from dcctl.cli.confirm import confirm
    from dcctl.drill.actions import sql_results
    from dcctl.ops.journal import Journal, new_operation_id
    from dcctl.ops.report import build_report, write_report

    name, service = cli.config.service(service_name)
    if dry_run:
        click.echo(f"full drill of {name}: switchover {primary} -> {standby}, {len(service.drill.sql_checks)} SQL "
                   f"check(s) on {standby}, dwell {service.drill.dwell_seconds:g} s, switchover {standby} -> {primary}"
                   f"\n(each switchover's own plan: dcctl switchover --dry-run)")
        return
    confirm(f"Full drill: switch {name} over to {standby} and back?", cli.assume_yes)
    op_id = new_operation_id("drill")
    journal = Journal.create(cli.config.state_dir, op_id, {
        "kind": "drill", "service": name, "old_primary": primary, "new_primary": standby, "args": {"mode": "full"}})
    ok = True
    try:
        there = _switchover_step(cli, journal, "switchover_there", service_name, primary, standby)
        ok = there["outcome"] == "success"
        if ok:
            journal.append("step_start", step="verify")
            started = time.monotonic()
            ctx = build_context(cli, "drill", service_name, standby, standby, {"mode": "full"})
            checks = sql_results(ctx, lambda dbname: _connect(ctx, standby, dbname))
            ctx.close()
            failed = [c["name"] for c in checks if not c["passed"]]
            journal.append("step_end", step="verify", seconds=round(time.monotonic() - started, 4),
                           observed={"checks": checks, "checks_failed": failed,
                                     "rto_seconds": there["write_unavailability_seconds"]})
            ok = not failed
            if service.drill.dwell_seconds:
                journal.append("step_start", step="dwell")
                time.sleep(service.drill.dwell_seconds)
                journal.append("step_end", step="dwell", seconds=service.drill.dwell_seconds, observed={})
            back = _switchover_step(cli, journal, "switchover_back", service_name, standby, primary)
            ok = ok and back["outcome"] == "success"
        journal.append("finish", outcome="success" if ok else "failed")
    finally:
        json_path, html_path = write_report(journal)
        say(f"drill report: {html_path}")
    report = build_report(journal.entries())
    if cli.output == "json":
        print_json(report)
    else:
        click.echo(f"full drill {op_id}: {report['outcome']} in {report['wall_seconds']:.2f} s")
    if not ok:
        sys.exit(1)


def _switchover_step(cli: Context, journal, step: str, service_name, old: str, new: str) -> dict:
    from dcctl.ops.actions import ACTIONS
    from dcctl.ops.engine import Runner
    from dcctl.ops.journal import Journal
    from dcctl.ops.playbook import load_playbook
    from dcctl.ops.report import build_report, write_report

    journal.append("step_start", step=step)
    started = time.monotonic()
    ctx = build_context(cli, "switchover", service_name, old, new, {"drill": journal.directory.name})
    playbook = load_playbook("switchover", ctx.config.playbooks_dir)
    ctx.journal = Journal.create(ctx.config.state_dir, ctx.op_id, {
        "kind": "switchover", "service": ctx.service_name, "old_primary": old, "new_primary": new,
        "args": ctx.args, "playbook": playbook.source})
    say(f"{step}: switchover {ctx.op_id}: {old} -> {new}")
    try:
        Runner(ctx, playbook, ACTIONS["switchover"]).run()
    except Exception as exc:
        journal.append("step_fail", step=step, error=str(exc))
        write_report(ctx.journal)
        return build_report(ctx.journal.entries())
    write_report(ctx.journal)
    report = build_report(ctx.journal.entries())
    journal.append("step_end", step=step, seconds=round(time.monotonic() - started, 4),
                   observed={f"{step}_operation": ctx.op_id,
                             f"{step}_write_unavailability_seconds": report["write_unavailability_seconds"]})
    return report


def _connect(ctx, site: str, dbname: str):
    import psycopg

    node = ctx.node(site)
    return psycopg.connect(host=node.host, port=node.port, user=node.user, dbname=dbname, passfile=node.passfile,
                           connect_timeout=5, autocommit=True, application_name="dcctl drill")
