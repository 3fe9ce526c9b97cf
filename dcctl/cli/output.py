"""Rendering: rich tables for people, JSON for scripts."""
from __future__ import annotations

import json
import sys
from typing import Any

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


def yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")
