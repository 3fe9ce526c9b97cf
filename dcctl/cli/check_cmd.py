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
    for name in service_names:
        service = config.services[name]
        with_disks = not names or bool({"disk_free", "filesync"} & set(map(check_of, names)))
        view = gather_view(config, name, service, with_disks=with_disks)
        facts = Facts(view, service.thresholds, now=time.time(),
                      recorded_generation=read_local(config.state_dir, name),
                      last_drill_success=last_success(config.state_dir, "drill", name))
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


def render(reports: list[dict]) -> None:
    """Rich tables on a terminal; plain lines in a pipe or the journal (output.show_table)."""
    for report in reports:
        color = COLORS[report["status"]]
        rows = [[f"[{COLORS[r['status']]}]{r['status']}[/]", escape(r["name"]), escape(r["site"] or "-"),
                 escape("-" if r["value"] is None else r["value"]), escape(r["threshold"] or "-"), escape(r["detail"])]
                for r in report["checks"]]
        show_table(f"service {escape(report['service'])}: [{color}]{report['status']}[/]",
                   ["status", "check", "site", "value", "threshold", "detail"], rows)
