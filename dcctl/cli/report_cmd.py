"""dcctl report: a service's history as one self-contained HTML page."""
from __future__ import annotations

from typing import TYPE_CHECKING

import time
from pathlib import Path

import click

from dcctl.cli.complete import complete_services
from dcctl.cli.context import Context

if TYPE_CHECKING:
    from dcctl.ops.report import OperationReport


def since_value(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    from dcctl.report.history import parse_since

    try:
        return parse_since(value, time.time())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.option("-s", "--service", "service_name", shell_complete=complete_services, metavar="NAME",
              help="The service (needed when there are several).")
@click.option("--since", default="90d", show_default=True, callback=since_value, metavar="PERIOD|DATE",
              help="How far back: 90d, 12h, 2w, or a date YYYY-MM-DD (UTC).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Directory to write the page to [default: STATE_DIR/reports].")
@click.pass_obj
def report(cli: Context, service_name: str | None, since: float, out_dir: str | None) -> None:
    """Write one HTML page of the service's switchovers, failovers, rejoins and drills.

    Outcome, write window, RTO, RPO and data loss of each, failures first, and a chart of them
    over time; inline CSS and SVG only (no script, no external file), so it can be mailed or
    attached to an audit. Prints the page's path.
    """
    from dcctl.ops.journal import operations_dir
    from dcctl.ops.report import write_private
    from dcctl.report.service_page import render_page

    config = cli.config
    name, _service = config.service(service_name)
    now = time.time()
    reports = service_reports(config.state_dir, name, since)
    directory = Path(out_dir) if out_dir else Path(config.state_dir) / "reports"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-history-{time.strftime('%Y%m%d', time.gmtime(now))}.html"
    write_private(path, render_page(name, reports, since, now, str(operations_dir(config.state_dir))))
    click.echo(str(path))


def service_reports(state_dir: str, service: str, since: float) -> list[OperationReport]:
    """The report of every operation of `service` started since `since`; unreadable journals are
    named on stderr, as `dcctl history` does."""
    from dcctl.ops.journal import Journal, operations_dir, scan_operations
    from dcctl.ops.report import build_report

    operations, notes = scan_operations(state_dir)
    for note in notes:
        click.echo(f"dcctl: warning: {note}", err=True)
    return [build_report(Journal(operations_dir(state_dir) / op_id / "journal.jsonl").entries())
            for op_id, state in operations
            if state.header["service"] == service and state.header["ts"] >= since]
