"""dcctl --version: dcctl's version and the versions of what it stands on, as found on this machine,
so that a bug report or an offline installation can be checked at a glance. Anything missing is
"not found", never an error."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import click

from dcctl import __version__

NOT_FOUND = "not found"


def version_lines(config_path: str | None) -> list[str]:
    lines = [f"dcctl {__version__}",
             f"Python: {platform.python_version()} ({sys.executable})",
             f"psycopg: {psycopg_version()}",
             f"paramiko: {module_version('paramiko')}",
             f"rsync: {tool_version(shutil.which('rsync'))}"]
    lines.extend(postgres_lines(config_path))
    return lines


def module_version(name: str) -> str:
    try:
        return __import__(name).__version__
    except Exception:  # any failure to import is a "not found" in a version report
        return NOT_FOUND


def psycopg_version() -> str:
    try:
        import psycopg
        from psycopg import pq
    except Exception:
        return NOT_FOUND
    return f"{psycopg.__version__} ({pq.__impl__}), libpq {libpq_text(pq.version())}"


def libpq_text(number: int) -> str:
    """
    >>> libpq_text(150008), libpq_text(180006)
    ('15.8', '18.6')
    """
    return f"{number // 10000}.{number % 10000}"


def tool_version(path: str | None) -> str:
    """The tool's own one-line version (e.g. "rsync  version 3.2.7  protocol version 31") and where it is."""
    if not path:
        return NOT_FOUND
    try:
        result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return f"{NOT_FOUND} (cannot run {path})"
    first = (result.stdout.strip().splitlines() or [""])[0]
    return f"{' '.join(first.split())} ({path})" if result.returncode == 0 and first else f"{NOT_FOUND} ({path})"


def postgres_lines(config_path: str | None) -> list[str]:
    """pg_dump of each bin_dir the config names that exists here, else the one on PATH."""
    lines = [f"PostgreSQL bin_dir {d}: {tool_version(str(Path(d) / 'pg_dump'))}"
             for d in config_bin_dirs(config_path) if (Path(d) / "pg_dump").exists()]
    return lines or [f"PostgreSQL client: {tool_version(shutil.which('pg_dump') or shutil.which('psql'))}"]


def config_bin_dirs(config_path: str | None) -> list[str]:
    from dcctl.config import default_config_path, load_config

    try:
        config = load_config(config_path or default_config_path())
    except Exception:  # no config, or a broken one: the version report does not judge it
        return []
    return sorted({site.postgres.bin_dir for service in config.services.values()
                   for site in service.sites.values()})


def print_versions(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    config_path = ctx.params.get("config_path") or os.environ.get("DCCTL_CONFIG")
    click.echo("\n".join(version_lines(config_path)))
    ctx.exit()


def version_option(command):
    return click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=print_versions,
                        help="Show the version of dcctl and of the tools it uses, and exit.")(command)
