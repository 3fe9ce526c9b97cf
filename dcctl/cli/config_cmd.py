"""dcctl config check: validate a config file and say what is wrong, all at once."""
from __future__ import annotations

import click

from dcctl.cli.main import Context


@click.group()
def config() -> None:
    """Work with the config file."""


@config.command("check")
@click.argument("path", required=False)
@click.pass_obj
def check(ctx: Context, path: str | None) -> None:
    """Validate PATH (default: the -c / $DCCTL_CONFIG / /etc/dcctl/dcctl.yaml config)."""
    from dcctl.config import default_config_path, load_config

    source = path or ctx.config_path or default_config_path()
    loaded = load_config(source)
    sites = sum(len(s.sites) for s in loaded.services.values())
    click.echo(f"{source}: OK ({len(loaded.services)} service(s), {sites} sites)")
