"""dcctl install-units: write the systemd units with this installation's paths and user."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from dcctl.cli.complete import complete_sites
from dcctl.cli.context import Context


@click.command("install-units")
@click.option("--site", shell_complete=complete_sites, required=True, metavar="SITE",
              help="The site this machine is (the agent's --site).")
@click.option("--user", default="postgres", show_default=True, help="Unprivileged user the units run as.")
@click.option("--unit-dir", default="/etc/systemd/system", show_default=True, type=click.Path(file_okay=False))
@click.option("--dry-run", is_flag=True, help="Print the units instead of writing them.")
@click.pass_obj
def install_units(cli: Context, site: str, user: str, unit_dir: str, dry_run: bool) -> None:
    """Write dcctl-agent.service, dcctl-drill.service/.timer and dcctl-check.service/.timer."""
    from dcctl.config import default_config_path
    from dcctl.install.units import UnitSettings, dcctl_command, default_group, render_all, writable_paths

    config = cli.config
    config.require_site(site)
    # sys.executable unresolved: a venv's bin/python is a symlink, and its console script sits beside it.
    settings = UnitSettings(dcctl=dcctl_command(os.path.abspath(sys.executable)),
                            config=os.path.abspath(cli.config_path or default_config_path()), site=site,
                            user=user, group=default_group(user), writable=writable_paths(config, site))
    units = render_all(settings)
    if dry_run:
        for name, text in units.items():
            click.echo(f"# ---- {Path(unit_dir) / name}\n{text}")
        return
    Path(unit_dir).mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (Path(unit_dir) / name).write_text(text)
        click.echo(f"wrote {Path(unit_dir) / name}")
    click.echo("next: systemctl daemon-reload && systemctl enable --now dcctl-agent.service dcctl-drill.timer "
               "dcctl-check.timer")
