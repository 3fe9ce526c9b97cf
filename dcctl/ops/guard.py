"""Refuse to start a node that could come back as a second primary."""
from __future__ import annotations

import posixpath

from dcctl.config.schema import Config, ServiceConfig
from dcctl.errors import RefusedError
from dcctl.ops import generation
from dcctl.transport.base import Transport


def check_start_allowed(config: Config, service_name: str, service: ServiceConfig, site: str,
                        transport: Transport) -> None:
    record = generation.read_local(config.state_dir, service_name)
    if record is None or record.primary == site:
        return
    node = service.sites[site].postgres
    is_standby = transport.exists(posixpath.join(node.data_dir, "standby.signal"))
    fenced = site in record.fenced
    if fenced or not is_standby:
        why = (f"site {site} was fenced by {record.operation} when {record.primary} became primary at generation "
               f"{record.generation}" if fenced else
               f"{record.primary} is the primary of generation {record.generation}, and {site} is not configured "
               f"as a standby")
        raise RefusedError(f"refusing to start PostgreSQL at {site}: {why}; started as it is, it could accept "
                           f"writes beside the current primary (split brain)",
                           hint=f"turn it into a standby first: dcctl rejoin --site {site}")



