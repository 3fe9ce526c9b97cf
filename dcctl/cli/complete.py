"""Shell completion of site and service names, read from the config the command line names
(-c, else $DCCTL_CONFIG, else /etc/dcctl/dcctl.yaml). Completion must never print an error into the
operator's shell: any problem with the config completes to nothing."""
from __future__ import annotations

import click


def service_names(config_path: str | None, incomplete: str) -> list[str]:
    config = _quiet_config(config_path)
    return [] if config is None else _starting_with(config.services, incomplete)


def site_names(config_path: str | None, service: str | None, incomplete: str) -> list[str]:
    """Sites of the named service, or of every service when none is named yet."""
    config = _quiet_config(config_path)
    if config is None:
        return []
    services = [config.services[service]] if service in config.services else config.services.values()
    return _starting_with({site for s in services for site in s.sites}, incomplete)


def complete_services(ctx: click.Context, _param, incomplete: str) -> list[str]:
    return service_names(_config_path(ctx), incomplete)


def complete_sites(ctx: click.Context, _param, incomplete: str) -> list[str]:
    return site_names(_config_path(ctx), ctx.params.get("service_name"), incomplete)


def _config_path(ctx: click.Context) -> str | None:
    return ctx.find_root().params.get("config_path")


def _quiet_config(config_path: str | None):
    from dcctl.config import default_config_path, load_config

    try:
        return load_config(config_path or default_config_path())
    except Exception:  # a missing or broken config completes to nothing, silently
        return None


def _starting_with(names, incomplete: str) -> list[str]:
    return sorted(name for name in names if name.startswith(incomplete))
