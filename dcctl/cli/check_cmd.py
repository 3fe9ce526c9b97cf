"""dcctl check: the health checks, worst first, with monitoring-plugin exit codes."""
from __future__ import annotations

import sys
import time

import click

from dcctl.cli.complete import complete_services
from dcctl.checks.catalog import CATALOG, SELECTABLE, check_of
from dcctl.cli.context import Context, output_option
from dcctl.cli.output import escape, print_json, show_table

COLORS = {"OK": "green", "WARN": "yellow", "CRIT": "bold red", "UNKNOWN": "magenta"}


@click.command()
@click.option("-s", "--service", "service_name", shell_complete=complete_services, metavar="NAME",
              help="Only this service.")
@click.option("--check", "names", multiple=True, type=click.Choice(SELECTABLE), metavar="NAME",
              help="Run only this check (repeatable). See --list.")
@click.option("--list", "list_checks", is_flag=True, help="List the checks and exit.")
@output_option(formats=("table", "json", "nagios", "tsv"))
@click.pass_obj
def check(ctx: Context, service_name: str | None, names: tuple[str, ...], list_checks: bool) -> None:
    """Run the health checks; exit 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN (the worst result).

    Sites are asked in parallel, each for at most `site_timeout` seconds: with one site dead,
    the command still answers within that deadline and names the dead site and the cause.
    `-o nagios`: the monitoring-plugin format (status line, perfdata, detail lines) for
    Nagios, Icinga or Zabbix; `-o tsv`: a header and one tab-separated line per result.
    """
    if list_checks:
        for name, (_check, help_text) in CATALOG.items():
            click.echo(f"{name:24} {help_text}")
        return
    from dcctl.checks.catalog import Facts, run_checks
    from dcctl.checks.result import ordered, worst
    from dcctl.ops.generation import read_local
    from dcctl.ops.journal import last_success
    from dcctl.topology import gather_view

    config = ctx.config
    service_names = [config.service(service_name)[0]] if service_name else list(config.services)
    reports = []
    overall = []
    with_disks = not names or bool({"disk_free", "filesync"} & set(map(check_of, names)))
    views = {name: gather_view(config, name, config.services[name], with_disks=with_disks) for name in service_names}
    primaries = None
    if not names or "site_split" in names:
        from dcctl.checks.site_split import primary_site

        # site_split compares every service of the config, also those --service leaves out
        views.update({name: gather_view(config, name, svc, with_disks=False)
                      for name, svc in config.services.items() if name not in views})
        primaries = {name: primary_site(views[name]) for name in config.services}
    for name in service_names:
        service = config.services[name]
        facts = Facts(views[name], service.thresholds, now=time.time(),
                      recorded_generation=read_local(config.state_dir, name),
                      last_drill_success=last_success(config.state_dir, "drill", name),
                      service_primaries=primaries, **pooler_facts(config, name, views[name], names))
        results = ordered(run_checks(facts, list(names) or None))
        overall += results
        reports.append({"service": name, "status": worst(results).name,
                        "checks": [r.as_dict() for r in results]})
    if ctx.output == "json":
        print_json({"status": worst(overall).name, "services": reports})
    elif ctx.output == "nagios":
        from dcctl.cli.check_formats import nagios

        click.echo(nagios(worst(overall).name, reports, {n: config.services[n].thresholds for n in service_names}))
    elif ctx.output == "tsv":
        from dcctl.cli.check_formats import tsv

        click.echo(tsv(reports))
    else:
        render(reports)
    sys.exit(int(worst(overall)))


def pooler_facts(config, name: str, view, names: tuple[str, ...]) -> dict:
    """The service's poolers as their admin consoles answer now (only when the pooler check runs)."""
    service = config.services[name]
    if names and "pooler" not in names:
        return {}
    if not service.poolers:
        return {"poolers": []} if names else {}  # asked for by name: say there is none
    from dcctl.checks.poolers import PoolerFact
    from dcctl.errors import DcctlError
    from dcctl.pooler import control
    from dcctl.pooler.console import AdminConsole

    facts = []
    for pooler in service.poolers:
        try:
            with AdminConsole(pooler, "check") as console:
                facts.append(PoolerFact(pooler.name, control.observe(console, service), None,
                                        pooler.stuck_pause_after))
        except DcctlError as exc:
            facts.append(PoolerFact(pooler.name, None, exc.message, pooler.stuck_pause_after))
    primaries = view.primaries()
    node = service.sites[primaries[0].site].postgres if len(primaries) == 1 else None
    return {"poolers": facts, "pooler_primary": (node.host, node.port) if node else None}


def render(reports: list[dict]) -> None:
    """Rich tables on a terminal; plain lines in a pipe or the journal (output.show_table)."""
    for report in reports:
        color = COLORS[report["status"]]
        rows = [[f"[{COLORS[r['status']]}]{r['status']}[/]", escape(r["name"]), escape(r["site"] or "-"),
                 escape("-" if r["value"] is None else r["value"]), escape(r["threshold"] or "-"), escape(r["detail"])]
                for r in report["checks"]]
        show_table(f"service {escape(report['service'])}: [{color}]{report['status']}[/]",
                   ["status", "check", "site", "value", "threshold", "detail"], rows)
