"""Rendering: rich tables for people, JSON for scripts."""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from dcctl.units import human_bytes  # noqa: F401  (re-exported for the commands)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def console():
    from rich.console import Console

    import shutil
    import sys

    # Piped output (logs, tickets) gets a wide page instead of rich's 80-column default.
    width = None if sys.stdout.isatty() else max(120, shutil.get_terminal_size((120, 24)).columns)
    return Console(highlight=False, width=width)


def on_terminal() -> bool:
    """Rich tables for a person at a terminal; plain lines for a pipe, a file or the journal."""
    return sys.stdout.isatty()


def plain(markup: str) -> str:
    """The text of a rich-markup cell, on one line."""
    from rich.text import Text

    return " ".join(Text.from_markup(markup).plain.split())


def plain_lines(columns: list[str], rows: list[list[str]]) -> list[str]:
    """Columns aligned with two spaces, never wrapped, no trailing spaces; the last column runs on.

    >>> plain_lines(["site", "detail"], [["rabat", "[green]up[/]"], ["backup", "down  "]])
    ['site    detail', 'rabat   up', 'backup  down']
    """
    cells = [list(columns)] + [[plain(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns) - 1)]
    return ["  ".join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]).rstrip()
            for row in cells]


def show_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A rich table on a terminal; elsewhere the title and plain lines (see plain_lines)."""
    if not on_terminal():
        click.echo(plain(title))
        for line in plain_lines(columns, rows):
            click.echo(line)
        return
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, overflow="fold", no_wrap=index == 0)  # the first names the row: kept whole
    for row in rows:
        table.add_row(*row)
    console().print(table)


def escape(text: Any) -> str:
    """Text from outside (an error, a path) made safe to put into markup."""
    from rich.markup import escape as rich_escape

    return rich_escape(str(text))


def show_line(markup: str) -> None:
    """One line of rich markup: coloured on a terminal, plain text elsewhere."""
    if on_terminal():
        console().print(markup, soft_wrap=True)
    else:
        click.echo(plain(markup))


def yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")
