"""The output of `dcctl history`: each operation as it was (a drill as a drill, at its site), and
where its report is (a drill's HTML page)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from dcctl.cli.output import escape, print_json, show_table
from dcctl.report.history import HISTORY_COLUMNS, history_entry, history_row


def show_history(state_dir: str | Path, op_ids: list[str], output: str) -> None:
    """Print the operations `op_ids` (in the order given) as a table, or as JSON."""
    from dcctl.ops.journal import Journal, operations_dir

    base = operations_dir(state_dir)
    reports = [_report(state_dir, Journal(base / op_id / "journal.jsonl")) for op_id in op_ids]
    entries = [history_entry(report, str(base / report["operation"])) for report in reports]
    if output == "json":
        print_json(entries)
        return
    show_table("operations (newest first)", HISTORY_COLUMNS, [[escape(cell) for cell in history_row(r)]
                                                             for r in reports])
    for entry in entries:
        if entry["kind"] == "drill" or str(entry["kind"]).startswith("site-"):
            click.echo(f"{entry['kind']} {entry['operation']}: {entry['report']}")
    if entries:
        click.echo(f"every operation's report: {base}/OPERATION/report.md; a service's history as one page: "
                   f"dcctl report")


def _report(state_dir: str | Path, journal) -> Mapping[str, Any]:
    """An operation's report; a site operation's is the site report (its services' figures in it)."""
    from dcctl.ops.report import build_report

    entries = journal.entries()
    if entries and entries[0].get("site_operation"):
        from dcctl.site.records import site_report

        return site_report(state_dir, journal)
    return build_report(entries)
