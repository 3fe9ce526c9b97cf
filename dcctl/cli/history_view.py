"""The output of `dcctl history`: each operation as it was (a drill as a drill, at its site), and
where its report is (a drill's HTML page)."""
from __future__ import annotations

from pathlib import Path

import click

from dcctl.cli.output import escape, print_json, show_table
from dcctl.report.history import HISTORY_COLUMNS, history_entry, history_row


def show_history(state_dir: str | Path, op_ids: list[str], output: str) -> None:
    """Print the operations `op_ids` (in the order given) as a table, or as JSON."""
    from dcctl.ops.journal import Journal, operations_dir
    from dcctl.ops.report import build_report

    base = operations_dir(state_dir)
    reports = [build_report(Journal(base / op_id / "journal.jsonl").entries()) for op_id in op_ids]
    entries = [history_entry(report, str(base / report["operation"])) for report in reports]
    if output == "json":
        print_json(entries)
        return
    show_table("operations (newest first)", HISTORY_COLUMNS, [[escape(cell) for cell in history_row(r)]
                                                             for r in reports])
    for entry in entries:
        if entry["kind"] == "drill":
            click.echo(f"drill {entry['operation']}: {entry['report']}")
    if entries:
        click.echo(f"every operation's report: {base}/OPERATION/report.md; a service's history as one page: "
                   f"dcctl report")
