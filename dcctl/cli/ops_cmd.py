"""dcctl switchover | failover | rejoin | resume | history | node: the journaled operations."""
from __future__ import annotations

import os
import sys

import click

from dcctl.cli.complete import complete_services, complete_sites
from dcctl.cli.main import Context, output_option
from dcctl.cli.output import print_json
from dcctl.errors import RefusedError, UsageError

service_option = click.option("-s", "--service", "service_name", shell_complete=complete_services,
                              metavar="NAME", help="The service (needed when there are several).")
dry_run_option = click.option("--dry-run", is_flag=True, help="Print the plan (steps, sites, commands) and change "
                                                              "nothing.")
break_lock_option = click.option("--break-lock", is_flag=True, help="Take over a lock left by a crashed operation "
                                                                    "(asks for confirmation).")


def say(text: str) -> None:
    click.echo(text, err=True)


def build_context(cli: Context, kind: str, service_name: str | None, old: str, new: str, args: dict,
                  op_id: str | None = None, journal=None):
    from dcctl.ops.engine import OpContext
    from dcctl.ops.journal import new_operation_id

    config = cli.config
    name, service = config.service(service_name)
    for site in (old, new):
        if site not in service.sites:
            raise RefusedError(f"no site named {site!r} in service {name}; sites: {', '.join(service.sites)}")
    return OpContext(op_id=op_id or new_operation_id(kind), kind=kind, config=config, service_name=name,
                     service=service, old_primary=old, new_primary=new, args=args, journal=journal, say=say)


def execute(cli: Context, ctx, *, dry_run: bool, break_lock: bool, question: str, typed: str | None = None,
            resume_state=None) -> None:
    from dcctl.cli.confirm import confirm
    from dcctl.ops.actions import ACTIONS
    from dcctl.ops.engine import Runner, plan_steps
    from dcctl.ops.journal import Journal
    from dcctl.ops.playbook import load_playbook
    from dcctl.ops.report import build_report, write_report

    playbook = load_playbook(ctx.kind, ctx.config.playbooks_dir)
    actions = ACTIONS[ctx.kind]
    if resume_state is None:
        show_plan(ctx, plan_steps(ctx, playbook, actions), dry_run)
        if dry_run:
            return
        if typed is not None:
            confirm_typed(typed, cli.assume_yes, ctx.args.get("confirm_site"))
        else:
            confirm(question, cli.assume_yes)
        if break_lock:
            confirm("Break the lock of the other operation?", cli.assume_yes)
        ctx.journal = Journal.create(ctx.config.state_dir, ctx.op_id, {
            "kind": ctx.kind, "service": ctx.service_name, "old_primary": ctx.old_primary,
            "new_primary": ctx.new_primary, "args": ctx.args, "playbook": playbook.source})
    say(f"{ctx.kind} {ctx.op_id}: {ctx.old_primary} -> {ctx.new_primary}")
    try:
        outcome = Runner(ctx, playbook, actions).run(resume_state=resume_state, break_lock=break_lock)
    finally:
        json_path, md_path = write_report(ctx.journal)
        say(f"report: {md_path}")
    report = build_report(ctx.journal.entries())
    if cli.output == "json":
        print_json(report)
    else:
        click.echo(summary(report))
    if outcome != "success":
        sys.exit(1)


def show_plan(ctx, planned, dry_run: bool) -> None:
    """The plan: the output of --dry-run (stdout); before a real run, shown on stderr."""
    err = not dry_run
    click.echo(f"{ctx.kind} of service {ctx.service_name}: {ctx.old_primary} -> {ctx.new_primary}"
               + (" (dry run: nothing is changed)" if dry_run else ""), err=err)
    for index, step in enumerate(planned, start=1):
        where = f"[{step.site}] " if step.site else ""
        mark = "  <- point of no return" if step.irreversible else ""
        click.echo(f"  {index:2}. {step.label}: {where}{step.describe}{mark}", err=err)
        if step.command:
            click.echo(f"      $ {step.command}", err=err)


def confirm_typed(site: str, assume_yes: bool, given: str | None) -> None:
    if given is not None:
        if given != site:
            raise RefusedError(f"--confirm-site {given!r} does not name the site being declared down ({site!r})")
        return
    if not sys.stdin.isatty():
        raise click.UsageError(f"declaring a site down needs its name typed: add --confirm-site {site}")
    typed = click.prompt(f"Type the name of the site you declare down ({site})")
    if typed != site:
        raise click.Abort()


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


def roles_from_view(cli: Context, service_name: str | None, to_site: str | None) -> tuple[str, str]:
    from dcctl.ops.preflight import choose_roles
    from dcctl.topology import gather_view

    config = cli.config
    name, service = config.service(service_name)
    if to_site:
        others = [s for s in service.sites if s != to_site]
        if to_site not in service.sites:
            raise RefusedError(f"no site named {to_site!r}; sites: {', '.join(service.sites)}")
        return others[0], to_site
    old, new = choose_roles(gather_view(config, name, service), None)
    if old is None:
        raise RefusedError("cannot tell which site is the primary; name the target with --to SITE")
    return old, new


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
    old, new = roles_from_view(cli, service_name, to_site)
    ctx = build_context(cli, "switchover", service_name, old, new, {})
    execute(cli, ctx, dry_run=dry_run, break_lock=break_lock, question=f"Switch {ctx.service_name} over to {new}?")


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
    old, new = roles_from_view(cli, service_name, to_site)
    args = {"primary_is_down": primary_is_down, "confirm_site": confirm_site}
    ctx = build_context(cli, "failover", service_name, old, new, args)
    execute(cli, ctx, dry_run=dry_run, break_lock=break_lock, question=f"Fence {old} and promote {new}?",
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
    config = cli.config
    name, service = config.service(service_name)
    if site not in service.sites:
        raise RefusedError(f"no site named {site!r}; sites: {', '.join(service.sites)}")
    primary = next(s for s in service.sites if s != site)
    args = {"keep_diverged": keep_diverged, "allow_reclone": allow_reclone, "force": force}
    ctx = build_context(cli, "rejoin", service_name, site, primary, args)
    execute(cli, ctx, dry_run=dry_run, break_lock=break_lock,
            question=f"Rewind {site} onto {primary}? Commits only {site} has are discarded (they are counted first).")


@click.command()
@click.argument("operation")
@break_lock_option
@output_option
@click.pass_obj
def resume(cli: Context, operation: str, break_lock: bool) -> None:
    """Continue a crashed or interrupted operation from its journal (or roll it back)."""
    from dcctl.ops.actions import ACTIONS
    from dcctl.ops.journal import Journal

    journal = Journal.open(cli.config.state_dir, operation)
    if not journal.path.is_file():
        raise RefusedError(f"no operation {operation!r} in {cli.config.state_dir}/operations",
                           hint="`dcctl history` lists them")
    state = journal.state()
    if journal.torn_note():
        say(journal.torn_note())
    if state.header["kind"] not in ACTIONS:
        raise RefusedError(f"{operation}: dcctl cannot resume an operation of kind {state.header['kind']!r}")
    if state.finished:
        from dcctl.ops.lock import release_finished_lock

        click.echo(f"nothing to resume: {operation} ended with outcome {state.outcome}")
        release_finished_lock(cli.config, state.header["service"], operation, say)
        return
    header = state.header
    ctx = build_context(cli, header["kind"], header["service"], header.get("old_primary"), header.get("new_primary"),
                        header.get("args", {}), op_id=operation, journal=journal)
    from dcctl.ops.resume import refuse_if_superseded

    refuse_if_superseded(cli.config, journal, state)
    journal.append("resume", pid=os.getpid())
    execute(cli, ctx, dry_run=False, break_lock=break_lock, question="", resume_state=state)


@click.command()
@click.option("-n", "--limit", default=20, show_default=True, help="How many operations, newest first.")
@output_option
@click.pass_obj
def history(cli: Context, limit: int) -> None:
    """List operations with their outcome and timings."""
    from dcctl.ops.journal import Journal, operations_dir, scan_operations
    from dcctl.ops.report import build_report

    operations, notes = scan_operations(cli.config.state_dir)
    for note in notes:
        say(f"dcctl: warning: {note}")
    rows = []
    for op_id, _state in reversed(operations[-limit:]):
        report = build_report(Journal(operations_dir(cli.config.state_dir) / op_id / "journal.jsonl").entries())
        report["report"] = str(operations_dir(cli.config.state_dir) / op_id / "report.md")
        rows.append(report)
    if cli.output == "json":
        print_json([{k: r[k] for k in ("operation", "kind", "service", "outcome", "started_at", "wall_seconds",
                                       "write_unavailability_seconds", "old_primary", "new_primary", "data_loss",
                                       "report")} for r in rows])
        return
    from rich.table import Table

    from dcctl.cli.output import console

    table = Table(title="operations (newest first)", title_justify="left")
    table.add_column("operation", no_wrap=True)
    for column in ("kind", "outcome", "started", "took", "write window", "roles"):
        table.add_column(column, overflow="fold")
    for r in rows:
        window = "-" if r["write_unavailability_seconds"] is None else f"{r['write_unavailability_seconds']:.3f} s"
        table.add_row(r["operation"], r["kind"], r["outcome"], r["started_at"][:19].replace("T", " "),
                      f"{r['wall_seconds']:.2f} s", window,
                      f"{r['old_primary']} -> {r['new_primary']}")
    console().print(table)


def require_site(service_name: str, service, site: str) -> None:
    if site not in service.sites:
        raise UsageError(f"no site named {site!r} in service {service_name}; known sites: "
                         f"{', '.join(service.sites)}")


@click.group()
def node() -> None:
    """Start or stop one site's PostgreSQL, guarded by the recorded generation."""


@node.command("start")
@service_option
@click.option("--site", shell_complete=complete_sites, required=True, metavar="SITE")
@click.pass_obj
def node_start(cli: Context, service_name, site) -> None:
    """Start PostgreSQL at SITE, unless it was fenced and could come up as a second primary."""
    from dcctl.ops.guard import check_start_allowed
    from dcctl.pg import control
    from dcctl.transport import open_transport

    config = cli.config
    name, service = config.service(service_name)
    require_site(name, service, site)
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
    require_site(name, service, site)
    if dry_run:
        click.echo(f"would stop PostgreSQL at {site} ({mode})")
        return
    confirm(f"Stop PostgreSQL at {site} ({mode})?", cli.assume_yes)
    control.stop(open_transport(site, service.sites[site]), service.sites[site].postgres, mode)
    click.echo(f"PostgreSQL stopped at {site}")

