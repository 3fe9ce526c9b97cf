"""dcctl switchover | failover | rejoin | resume | history | node: the journaled operations."""
from __future__ import annotations

import sys

import click

from dcctl.cli.complete import complete_services, complete_sites
from dcctl.cli.confirm import confirm_typed
from dcctl.cli.context import Context, output_option
from dcctl.cli.output import print_json
from dcctl.errors import RefusedError

service_option = click.option("-s", "--service", "service_name", shell_complete=complete_services,
                              metavar="NAME", help="The service (needed when there are several).")
dry_run_option = click.option("--dry-run", is_flag=True, help="Print the plan (steps, sites, commands) and change "
                                                              "nothing.")
break_lock_option = click.option("--break-lock", is_flag=True, help="Take over a lock left by a crashed operation "
                                                                    "(asks for confirmation).")


def say(text: str) -> None:
    click.echo(text, err=True)


def carry_out(cli: Context, plan, *, dry_run: bool, break_lock: bool, question: str,
              typed: str | None = None) -> None:
    """Show the plan; stop there for --dry-run; refuse before asking; ask; run; print the outcome."""
    from dcctl.cli.confirm import confirm
    from dcctl.ops import operation

    show_plan(plan, dry_run)
    if dry_run:
        if plan.refusals:
            raise RefusedError(f"{plan.ctx.kind} would be refused (dry run, nothing changed)")
        return
    plan.refuse_if_needed(break_lock=break_lock)
    if typed is not None:
        confirm_typed(typed, cli.assume_yes, plan.ctx.args.get("confirm_site"))
    else:
        confirm(question, cli.assume_yes)
    if break_lock:
        confirm("Break the lock of the other operation?", cli.assume_yes)
    say(f"{plan.ctx.kind} {plan.ctx.op_id}: {plan.ctx.old_primary} -> {plan.ctx.new_primary}")
    print_outcome(cli, operation.run(plan, break_lock=break_lock))


def print_outcome(cli: Context, done) -> None:
    if cli.output == "json":
        print_json(done.report)
    else:
        click.echo(summary(done.report))
    if done.outcome != "success":
        sys.exit(1)


def plan_of(cli: Context, kind: str, service_name: str | None, **kwargs):
    from dcctl.ops import operation

    return operation.plan(cli.config, kind, service_name, say=say, **kwargs)


def show_plan(plan, dry_run: bool) -> None:
    """The plan and every reason to refuse it: the output of --dry-run (stdout); before a real
    run, shown on stderr."""
    err = not dry_run
    click.echo(plan.headline + (" (dry run: nothing is changed)" if dry_run else ""), err=err)
    for index, step in enumerate(plan.steps, start=1):
        where = f"[{step.site}] " if step.site else ""
        mark = "  <- point of no return" if step.irreversible else ""
        click.echo(f"  {index:2}. {step.label}: {where}{step.describe}{mark}", err=err)
        if step.command:
            click.echo(f"      $ {step.command}", err=err)
    if plan.refusals:
        click.echo("refused, for these reasons (all of them):", err=err)
        for reason in plan.refusals:
            click.echo(f"  - {reason}", err=err)


def summary(report: dict) -> str:
    lines = [f"{report['kind']} {report['operation']}: {report['outcome']} in {report['wall_seconds']:.2f} s"]
    if report["write_unavailability_seconds"] is not None:
        lines.append(f"write unavailability (server side): {report['write_unavailability_seconds']:.3f} s")
    observed = report["observed"]
    if report["kind"] == "drill" and observed.get("rto_seconds") is not None:
        rpo = observed.get("rpo_seconds")
        lines.append(f"time to ready (RTO): {observed['rto_seconds']:.3f} s; data freshness (RPO): "
                     + ("unknown (primary not reachable)" if rpo is None else f"{rpo:.3f} s behind the primary"))
        for check in observed.get("checks", []):
            lines.append(f"  {'PASS' if check['passed'] else 'FAIL'} {check['detail']}")
    lines.append(f"data loss: {report['data_loss']}")
    return "\n".join(lines)


@click.command()
@service_option
@click.option("--to", "to_site", shell_complete=complete_sites, metavar="SITE",
              help="The site to promote [default: the standby].")
@dry_run_option
@break_lock_option
@output_option
@click.pass_obj
def switchover(cli: Context, service_name, to_site, dry_run, break_lock) -> None:
    """Planned move of the primary role to the other site: zero committed transactions lost."""
    plan = plan_of(cli, "switchover", service_name, to_site=to_site)
    carry_out(cli, plan, dry_run=dry_run, break_lock=break_lock,
              question=f"Switch {plan.ctx.service_name} over to {plan.ctx.new_primary}?")


@click.command()
@service_option
@click.option("--to", "to_site", shell_complete=complete_sites, metavar="SITE",
              help="The standby to promote [default: the standby].")
@click.option("--primary-is-down", is_flag=True, help="Declare the old primary down when dcctl can neither reach "
                                                      "it nor fence it (asks you to type its name).")
@click.option("--confirm-site", metavar="SITE", help="With --primary-is-down: the old primary's name, for scripts.")
@dry_run_option
@break_lock_option
@output_option
@click.pass_obj
def failover(cli: Context, service_name, to_site, primary_is_down, confirm_site, dry_run, break_lock) -> None:
    """Promote the standby after the primary site is lost: fence first, never two primaries."""
    args = {"primary_is_down": primary_is_down, "confirm_site": confirm_site}
    plan = plan_of(cli, "failover", service_name, to_site=to_site, args=args)
    old, new = plan.ctx.old_primary, plan.ctx.new_primary
    carry_out(cli, plan, dry_run=dry_run, break_lock=break_lock, question=f"Fence {old} and promote {new}?",
              typed=old if primary_is_down else None)


@click.command()
@service_option
@click.option("--site", "site", shell_complete=complete_sites, required=True, metavar="SITE",
              help="The old primary to turn into a standby.")
@click.option("--keep-diverged", is_flag=True, help="Copy its data directory aside before the rewind, so the "
                                                    "diverged rows can still be read (docs/runbooks.md).")
@click.option("--allow-reclone", is_flag=True, help="Re-clone when pg_rewind cannot be used (old data kept aside).")
@click.option("--force", is_flag=True, help="Rejoin even if it already streams.")
@dry_run_option
@break_lock_option
@output_option
@click.pass_obj
def rejoin(cli: Context, service_name, site, keep_diverged, allow_reclone, force, dry_run, break_lock) -> None:
    """Turn the old primary into a standby of the current primary (pg_rewind), counting what it discards."""
    args = {"keep_diverged": keep_diverged, "allow_reclone": allow_reclone, "force": force}
    plan = plan_of(cli, "rejoin", service_name, site=site, args=args)
    primary = plan.ctx.new_primary
    carry_out(cli, plan, dry_run=dry_run, break_lock=break_lock,
              question=f"Rewind {site} onto {primary}? Commits only {site} has are discarded (they are counted "
                       f"first).")


@click.command()
@click.argument("operation")
@break_lock_option
@output_option
@click.pass_obj
def resume(cli: Context, operation: str, break_lock: bool) -> None:
    """Continue a crashed or interrupted operation from its journal (or roll it back)."""
    from dcctl.ops import operation as operations
    from dcctl.ops.journal import Journal

    journal = Journal.open(cli.config.state_dir, operation)
    if not journal.path.is_file():
        raise RefusedError(f"no operation {operation!r} in {cli.config.state_dir}/operations",
                           hint="`dcctl history` lists them")
    state = journal.state()
    torn = journal.torn_note()
    if torn:
        say(torn)
    if state.header.get("site_operation"):
        from dcctl.cli.site_cmd import resume_site

        resume_site(cli, journal, break_lock)
        return
    if state.header["kind"] not in operations.KINDS:
        raise RefusedError(f"{operation}: dcctl cannot resume an operation of kind {state.header['kind']!r}")
    if state.finished:
        from dcctl.ops.lock import release_finished_lock

        click.echo(f"nothing to resume: {operation} ended with outcome {state.outcome}")
        release_finished_lock(cli.config, state.header["service"], operation, say)
        return
    if break_lock:
        from dcctl.cli.confirm import confirm

        confirm("Break the lock of the other operation?", cli.assume_yes)
    say(f"resuming {state.header['kind']} {operation}")
    print_outcome(cli, operations.resume(cli.config, journal, state, break_lock=break_lock, say=say))


@click.command()
@click.option("-n", "--limit", default=20, show_default=True, help="How many operations, newest first.")
@output_option
@click.pass_obj
def history(cli: Context, limit: int) -> None:
    """List operations with their outcome and timings (drills as drills, with their report)."""
    from dcctl.cli.history_view import show_history
    from dcctl.ops.journal import scan_operations

    operations, notes = scan_operations(cli.config.state_dir)
    for note in notes:
        say(f"dcctl: warning: {note}")
    show_history(cli.config.state_dir, [op_id for op_id, _state in reversed(operations[-limit:])], cli.output)


@click.group()
def node() -> None:
    """Start or stop one site's PostgreSQL, guarded by the recorded generation."""


@node.command("start")
@service_option
@click.option("--site", shell_complete=complete_sites, required=True, metavar="SITE")
@dry_run_option
@click.pass_obj
def node_start(cli: Context, service_name, site, dry_run) -> None:
    """Start PostgreSQL at SITE, unless it was fenced and could come up as a second primary."""
    from dcctl.ops.guard import check_start_allowed
    from dcctl.pg import control
    from dcctl.transport import open_transport

    config = cli.config
    name, service = config.service(service_name)
    service.site(site, name)
    if dry_run:
        click.echo(f"would start PostgreSQL at {site} ({service.sites[site].postgres.control.method}), unless the "
                   f"recorded generation says it was fenced")
        return
    transport = open_transport(site, service.sites[site])
    check_start_allowed(config, name, service, site, transport)
    control.start(transport, service.sites[site].postgres)
    click.echo(f"PostgreSQL started at {site}")


@node.command("stop")
@service_option
@click.option("--site", shell_complete=complete_sites, required=True, metavar="SITE")
@click.option("--mode", type=click.Choice(["smart", "fast", "immediate"]), default="fast", show_default=True)
@dry_run_option
@click.pass_obj
def node_stop(cli: Context, service_name, site, mode, dry_run) -> None:
    """Stop PostgreSQL at SITE."""
    from dcctl.cli.confirm import confirm
    from dcctl.pg import control
    from dcctl.transport import open_transport

    config = cli.config
    name, service = config.service(service_name)
    service.site(site, name)
    if dry_run:
        click.echo(f"would stop PostgreSQL at {site} ({mode})")
        return
    confirm(f"Stop PostgreSQL at {site} ({mode})?", cli.assume_yes)
    control.stop(open_transport(site, service.sites[site]), service.sites[site].postgres, mode)
    click.echo(f"PostgreSQL stopped at {site}")

