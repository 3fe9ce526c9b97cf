"""dcctl config check: validate a config file and say what is wrong, all at once. OK means the
operations can start: the config loads (which resolves every hook's site to a site of its service,
or old_primary / new_primary), every playbook it would use loads, and every hook it lists sits at a
hook point of those playbooks."""
from __future__ import annotations

import difflib
import json
from pathlib import PurePath

import click

from dcctl.cli.context import Context
from dcctl.errors import ConfigError


@click.group()
def config() -> None:
    """Work with the config file."""


@config.command("check")
@click.argument("path", required=False)
@click.pass_obj
def check(ctx: Context, path: str | None) -> None:
    """Validate PATH (default: the -c / $DCCTL_CONFIG / /etc/dcctl/dcctl.yaml config), the playbooks
    it uses and its hooks."""
    from dcctl.config import default_config_path, load_config

    source = path or ctx.config_path or default_config_path()
    loaded = load_config(source)
    problems = operation_problems(loaded)
    if problems:
        raise ConfigError(problems, hint="an operation would refuse to start with this config")
    sites = sum(len(s.sites) for s in loaded.services.values())
    playbooks = loaded.playbooks_dir or "the dcctl package"
    for warning in store_owner_warnings(loaded):
        click.echo(f"dcctl: warning: {warning}", err=True)
    click.echo(f"{source}: OK ({len(loaded.services)} service(s), {sites} sites), playbooks from {playbooks}")


def store_owner_warnings(config) -> list[str]:
    """File stores whose owners the receiving site cannot keep (asked at the sites)."""
    from dcctl.filesync.owners import with_site_transports

    return [warning for name, service in config.services.items()
            for warning in with_site_transports(name, service)]


def operation_problems(config) -> list[str]:
    """What would stop switchover, failover, rejoin or drill before their first step."""
    problems = playbooks_dir_problems(config)
    try:
        playbooks = playbooks_of(config)
    except ConfigError as exc:
        return problems + exc.problems
    return problems + hook_problems(config, playbooks)


def playbooks_dir_problems(config) -> list[str]:
    directory = config.playbooks_dir
    if directory and not PurePath(directory).is_absolute():
        # systemd runs the drill and check units from /, not from where the operator tested them.
        return [f"{config.source}: playbooks_dir: expected an absolute path, got {json.dumps(directory)}"]
    return []


def playbooks_of(config) -> dict:
    """Every playbook the config's operations would load, all problems at once."""
    from dcctl.ops.playbook import BUILTIN_STEPS, load_playbook

    loaded, problems = {}, []
    for operation in BUILTIN_STEPS:
        try:
            loaded[operation] = load_playbook(operation, config.playbooks_dir)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return loaded


def hook_problems(config, playbooks: dict) -> list[str]:
    """A hook at a point no playbook has would never run (say, writers never stopped before a switchover)."""
    points = sorted({point for playbook in playbooks.values() for point in playbook.hook_points})
    problems = []
    for name, service in config.services.items():
        for point in service.hooks:
            if point not in points:
                close = difflib.get_close_matches(point, points, n=1)
                guess = f'; did you mean "{close[0]}"?' if close else ""
                problems.append(f"{config.source}: services.{name}.hooks.{point}: expected a hook point of the "
                                f"playbooks ({', '.join(points)}), got {json.dumps(point)}{guess}")
    return problems
