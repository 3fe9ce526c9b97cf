"""dcctl status: roles, LSNs, lag and streaming of every site, asked in parallel."""
from __future__ import annotations

import click

from dcctl.cli.complete import complete_services
from dcctl.cli.context import Context, output_option
from dcctl.cli.output import escape, human_bytes, print_json, show_line, show_table, yes_no


@click.command()
@click.option("-s", "--service", "service_name", shell_complete=complete_services, metavar="NAME",
              help="Only this service.")
@output_option
@click.pass_obj
def status(ctx: Context, service_name: str | None) -> None:
    """Show each site of each service: reachable, role, LSNs, lag, streaming, slot.

    Every site is asked at once and waited for at most `site_timeout` seconds, so a dead site
    shows as unreachable with its cause instead of stalling the command. Exits 0 whenever the
    status could be shown; use `dcctl check` for alerting exit codes.
    """
    from dcctl.status_report import service_status
    from dcctl.topology import gather_view

    config = ctx.config
    names = [config.service(service_name)[0]] if service_name else list(config.services)
    reports = [service_status(gather_view(config, name, config.services[name])) for name in names]
    if ctx.output == "json":
        print_json({"services": reports})
    else:
        render(reports)


COLUMNS = ["site", "reachable", "postgres", "role", "TL", "LSN current / received / replayed", "lag", "streaming",
           "slot"]


def render(reports: list[dict]) -> None:
    """Rich tables on a terminal; plain lines in a pipe or the journal (output.show_table)."""
    for report in reports:
        show_table(f"service {report['service']}", COLUMNS, [site_row(site) for site in report["sites"]])
        if len(report["primaries"]) != 1:
            show_line(f"[red]{len(report['primaries'])} primaries: {', '.join(report['primaries']) or 'none'}[/red]")
        for site in report["sites"]:
            for problem in (site["transport_error"], site["postgres"]["error"]):
                if problem:
                    show_line(f"[red]{escape(site['site'])}:[/red] {escape(problem)}")


def site_row(site: dict) -> list[str]:
    lag = site["lag"]
    slot = site["slot"]
    if slot:
        state = {True: "active", False: "[red]inactive[/]", None: "?"}[slot["active"]]
        slot_text = f"{slot['name']} {state}" if slot["exists"] is not False else f"{slot['name']} [red]missing[/]"
    elif site["slots"]:
        slot_text = ", ".join(s["name"] for s in site["slots"])
    else:
        slot_text = "-"
    role = site["role"]
    role_text = {"primary": "[bold green]primary[/]", "standby": "[cyan]standby[/]"}.get(role, "[red]unknown[/]")
    pg = "[green]up[/]" if site["postgres"]["up"] else "[red]down[/]"
    reachable = {True: "[green]yes[/]", False: "[red]no[/]", None: "[red]no answer[/]"}[site["reachable"]]
    streaming = yes_no(site["streaming"])
    if site["streaming"] is False:
        streaming = "[red]no[/]"
    lag_text = "-"
    if lag["bytes"] is not None:
        lag_text = human_bytes(lag["bytes"]) + ("" if lag["seconds"] is None else f", {lag['seconds']:.1f} s")
    lsn = site["lsn"]
    lsn_text = lsn["current"] or " / ".join(v or "-" for v in (lsn["received"], lsn["replayed"])) \
        if site["postgres"]["up"] else "-"
    return [site["site"], reachable, pg, role_text, str(site["timeline"] or "-"), lsn_text, lag_text,
            streaming, slot_text]
