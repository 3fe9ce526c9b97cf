"""The settings that make a data directory a standby of a given primary (pure)."""
from __future__ import annotations

import re
from collections.abc import Mapping

from dcctl.config.schema import PostgresConfig
from dcctl.pg.tools import conninfo


def default_slot_name(site: str) -> str:
    """
    >>> default_slot_name("backup-dc.2")
    'dcctl_backup_dc_2'
    """
    return "dcctl_" + re.sub(r"[^a-z0-9_]", "_", site.lower())


def slot_name(site: str, node: PostgresConfig) -> str:
    return node.slot_name or default_slot_name(site)


def primary_conninfo(primary: PostgresConfig, standby_site: str, standby: PostgresConfig) -> str:
    """How the standby reaches the primary: a passfile at the standby's site, never a password."""
    return conninfo(host=primary.host, port=primary.port, user=primary.replication_user,
                    passfile=standby.replication_passfile, application_name=standby_site)


def standby_settings(primary: PostgresConfig, standby_site: str, standby: PostgresConfig) -> dict[str, str]:
    return {
        "primary_conninfo": primary_conninfo(primary, standby_site, standby),
        "primary_slot_name": slot_name(standby_site, standby),
        "port": str(standby.port),
    }


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def update_auto_conf(text: str, settings: Mapping[str, str | None]) -> str:
    """postgresql.auto.conf with `settings` set (None removes one); other lines untouched.

    >>> update_auto_conf("# header\\nport = '5432'\\nwork_mem = '8MB'\\n", {"port": "5433", "primary_slot_name": "s"})
    "# header\\nwork_mem = '8MB'\\nport = '5433'\\nprimary_slot_name = 's'\\n"
    """
    keep = []
    for line in text.splitlines():
        name = line.split("=", 1)[0].strip().lower() if "=" in line and not line.lstrip().startswith("#") else None
        if name not in settings:
            keep.append(line)
    keep += [f"{name} = {quote(value)}" for name, value in settings.items() if value is not None]
    return "\n".join(keep) + "\n"
