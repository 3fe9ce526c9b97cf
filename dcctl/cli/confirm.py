"""Show the plan, then ask — unless --yes / DCCTL_ASSUME_YES. Closed stdin (timers) means no."""
from __future__ import annotations


import sys

import click

from dcctl.errors import RefusedError
from dcctl.plan.step import Step


def show_plan(title: str, steps: list[Step]) -> None:
    click.echo(title)
    for index, step in enumerate(steps, start=1):
        where = f"[{step.site}] " if step.site else ""
        click.echo(f"  {index:2}. {where}{step.describe}")
        if step.command:
            click.echo(f"      $ {step.command}")


def confirm(question: str, assume_yes: bool) -> None:
    if assume_yes:
        return
    if not sys.stdin.isatty():
        raise click.UsageError("confirmation needed but stdin is not a terminal: add --yes "
                               "(or set DCCTL_ASSUME_YES=1) once you have checked the plan with --dry-run")
    click.confirm(question, abort=True)


def confirm_typed(site: str, assume_yes: bool, given: str | None) -> None:
    """Declaring a site down: its name typed (or given with --confirm-site), even with --yes."""
    if given is not None:
        if given != site:
            raise RefusedError(f"--confirm-site {given!r} does not name the site being declared down ({site!r})")
        return
    if not sys.stdin.isatty():
        raise click.UsageError(f"declaring a site down needs its name typed: add --confirm-site {site}")
    typed = click.prompt(f"Type the name of the site you declare down ({site})")
    if typed != site:
        raise click.Abort()
