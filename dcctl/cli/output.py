"""Rendering: rich tables for people, JSON for scripts."""
from __future__ import annotations

import json
import sys
from typing import Any


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


def human_bytes(value: int | None) -> str:
    """
    >>> human_bytes(0), human_bytes(1536), human_bytes(None)
    ('0 B', '1.5 KiB', '-')
    """
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


def yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")
