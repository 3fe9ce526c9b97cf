"""dcctl replication check-prereqs | init."""
from __future__ import annotations

import sys

import click

from dcctl.cli.complete import complete_services, complete_sites
from dcctl.cli.context import Context, output_option
from dcctl.cli.output import print_json


@click.group()
def replication() -> None:
    """Build and verify PostgreSQL streaming replication between the two sites."""


@replication.command()
@click.option("-s", "--service", "service_name", shell_complete=complete_services, metavar="NAME",
              help="The service (needed when there are several).")
@click.option("--from", "source", metavar="SITE", help="The primary to copy [default: the site that is primary].")
@click.option("--to", "target", shell_complete=complete_sites, metavar="SITE",
              help="The site to build the standby at [default: the other one].")
@click.option("--force", is_flag=True, help="Rebuild even if the site has data: stop it, move the data aside "
                                            "(named with the date), never delete it.")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.pass_obj
def init(ctx: Context, service_name: str | None, source: str | None, target: str | None, force: bool,
         dry_run: bool) -> None:
    """Build the standby from the primary with pg_basebackup, a slot, and wait until it streams."""
    from dcctl.cli.confirm import confirm, show_plan
    from dcctl.cli.progress import ConsoleReporter
    from dcctl.replication.init import prepare_init

    config = ctx.config
    name, service = config.service(service_name)
    for given in (source, target):
        if given is not None:
            service.site(given, name)
    plan, builder = prepare_init(config, name, service, source=source, target=target, force=force)
    if plan.nothing_to_do:
        click.echo(f"nothing to do: {plan.nothing_to_do}")
        return
    steps = builder.steps()
    show_plan(f"replication init of service {name}: {plan.request.primary_site} -> {plan.request.standby_site}",
              steps)
    if dry_run:
        return
    confirm(f"Build the standby at {plan.request.standby_site}?", ctx.assume_yes)
    timings = builder.run(ConsoleReporter())
    total = sum(seconds for _, seconds in timings)
    click.echo(f"standby {plan.request.standby_site} streams from {plan.request.primary_site} "
               f"(slot {plan.slot}); {total:.1f} s"
               + (f"; the old data directory is kept at {plan.aside_dir}" if plan.aside_dir else ""))


@replication.command("check-prereqs")
@click.option("-s", "--service", "service_name", shell_complete=complete_services, metavar="NAME",
              help="The service (needed when there are several).")
@output_option
@click.pass_obj
def check_prereqs(ctx: Context, service_name: str | None) -> None:
    """Every setting and permission a standby, a failover and a rewind need, on both sites.

    Exit 0 when all is ready, 1 with warnings, 2 when something blocks replication.
    """
    from dcctl.checks.result import ordered, worst
    from dcctl.cli.check_cmd import render
    from dcctl.replication.prereqs import gather_prereqs

    config = ctx.config
    name, service = config.service(service_name)
    results = ordered(gather_prereqs(config, name, service))
    report = {"service": name, "status": worst(results).name, "checks": [r.as_dict() for r in results]}
    if ctx.output == "json":
        print_json(report)
    else:
        render([report])
    sys.exit(int(worst(results)))
