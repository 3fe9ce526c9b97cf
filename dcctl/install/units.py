"""systemd units from the templates shipped in the package (dcctl/data/systemd; the repository's
systemd/ is a symlink to it), with this installation's command, paths and user (rendering is pure;
writing is the caller's)."""
from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from dcctl.config.schema import Config

UNITS = ("dcctl-agent.service", "dcctl-drill.service", "dcctl-drill.timer", "dcctl-check.service",
         "dcctl-check.timer")


@dataclass(frozen=True)
class UnitSettings:
    dcctl: str  # the command that runs dcctl: an executable's absolute path, or "PYTHON -m dcctl"
    config: str  # absolute path of the config file
    site: str
    user: str
    group: str
    writable: tuple[str, ...]


def shipped_templates() -> Traversable:
    return resources.files("dcctl") / "data" / "systemd"


def dcctl_command(python: str) -> str:
    """What ExecStart= runs: the console script installed beside the interpreter (a venv's bin/, or
    /usr/local/bin) when there is one, else the interpreter itself with -m dcctl. Never a path that
    is not executable, and never looked up on PATH, which differs between a shell and systemd.

    >>> dcctl_command("/nonexistent/bin/python3")
    '/nonexistent/bin/python3 -m dcctl'
    """
    script = Path(python).parent / "dcctl"
    if script.is_file() and os.access(script, os.X_OK):
        return _quoted(str(script))
    return f"{_quoted(python)} -m dcctl"


def _quoted(word: str) -> str:
    return f'"{word}"' if " " in word else word


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


def render_all(settings: UnitSettings, templates: Traversable | None = None) -> dict[str, str]:
    templates = templates or shipped_templates()
    return {name: render((templates / name).read_text(encoding="utf-8"), settings) for name in UNITS}
