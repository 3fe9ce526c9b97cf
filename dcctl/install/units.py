"""systemd units from the templates in systemd/, with this installation's paths and user (pure
rendering; writing is the caller's)."""
from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass
from pathlib import Path

from dcctl.config.schema import Config

TEMPLATES = Path(__file__).resolve().parents[2] / "systemd"
UNITS = ("dcctl-agent.service", "dcctl-drill.service", "dcctl-drill.timer", "dcctl-check.service",
         "dcctl-check.timer")


@dataclass(frozen=True)
class UnitSettings:
    dcctl: str  # absolute path of the dcctl executable
    config: str  # absolute path of the config file
    site: str
    user: str
    group: str
    writable: tuple[str, ...]


def writable_paths(config: Config, site: str) -> tuple[str, ...]:
    """What the agent and the drill write at this site: state, PostgreSQL's data and the stores."""
    paths = {config.state_dir}
    for service in config.services.values():
        if site in service.sites:
            cfg = service.sites[site]
            paths |= {cfg.state_dir, str(Path(cfg.postgres.data_dir).parent), *cfg.file_stores.values()}
    return tuple(sorted(paths))


def default_group(user: str) -> str:
    try:
        return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    except KeyError:
        return user


def render(template: str, settings: UnitSettings) -> str:
    """
    >>> s = UnitSettings("/usr/bin/dcctl", "/etc/dcctl/dcctl.yaml", "rabat", "postgres", "postgres", ("/a", "/b c"))
    >>> render("ExecStart=@DCCTL@ -c @CONFIG@ agent run --site @SITE@\\nReadWritePaths=@RW_PATHS@", s)
    'ExecStart=/usr/bin/dcctl -c /etc/dcctl/dcctl.yaml agent run --site rabat\\nReadWritePaths=-/a "-/b c"'
    """
    rw = " ".join(f'"-{p}"' if " " in p else f"-{p}" for p in settings.writable)  # "-": a missing path is fine
    for name, value in (("@DCCTL@", settings.dcctl), ("@CONFIG@", settings.config), ("@SITE@", settings.site),
                        ("@USER@", settings.user), ("@GROUP@", settings.group), ("@RW_PATHS@", rw)):
        template = template.replace(name, value)
    return template


def render_all(settings: UnitSettings, templates: Path = TEMPLATES) -> dict[str, str]:
    return {name: render((templates / name).read_text(), settings) for name in UNITS}
