"""ServiceView -> the figures `dcctl status` shows (pure). The dict is the documented JSON
schema (docs/status.md); the table is drawn from the same dict."""
from __future__ import annotations

from typing import Any

from dcctl.model import NodeStatus, Role, ServiceView, SiteStatus
from dcctl.pg.lsn import lsn_diff


def service_status(view: ServiceView) -> dict[str, Any]:
    primaries = view.primaries()
    primary = primaries[0] if len(primaries) == 1 else None
    return {
        "service": view.service,
        "taken_at": view.taken_at.isoformat(),
        "primary": primary.site if primary else None,
        "primaries": [p.site for p in primaries],
        "sites": [site_status(site, primary) for site in view.sites],
    }


def site_status(site: SiteStatus, primary: SiteStatus | None) -> dict[str, Any]:
    node = site.node
    entry: dict[str, Any] = {
        "site": site.site,
        "transport": site.transport,
        "reachable": site.reachable,
        "transport_error": site.transport_error,
        "postgres": {"address": site.postgres, "up": site.postgres_up, "error": site.postgres_error},
        "role": site.role.value,
        "in_recovery": node.in_recovery if node else None,
        "timeline": node.timeline if node else None,
        "lsn": {"current": node.current_lsn if node else None,
                "received": node.receive_lsn if node else None,
                "replayed": node.replay_lsn if node else None},
        "lag": {"bytes": None, "seconds": None},
        "streaming": None,
        "upstream": node.upstream if node else None,
        "replay_paused": node.replay_paused if node else None,
        "slot": None,
        "slots": [],
    }
    if node is None:
        return entry
    if site.role is Role.PRIMARY:
        entry["slots"] = [{"name": s.name, "active": s.active, "retained_bytes": s.retained_bytes}
                          for s in node.slots]
        return entry
    entry["streaming"] = node.receiver_status == "streaming"
    upstream = primary.node if primary and primary.node else None
    lag_bytes = replay_lag_bytes(upstream.current_lsn if upstream else None, node.replay_lsn)
    entry["lag"] = {"bytes": lag_bytes, "seconds": replay_lag_seconds(lag_bytes, node)}
    slot_name = node.receiver_slot or node.settings.get("primary_slot_name") or None
    if slot_name:
        slot = next((s for s in upstream.slots if s.name == slot_name), None) if upstream else None
        entry["slot"] = {"name": slot_name,
                         "exists": None if upstream is None else slot is not None,
                         "active": slot.active if slot else None,
                         "retained_bytes": slot.retained_bytes if slot else None}
    return entry


def replay_lag_bytes(primary_current_lsn: str | None, standby_replay_lsn: str | None) -> int | None:
    """Bytes of WAL the primary has written that the standby has not replayed.

    >>> replay_lag_bytes("0/3000200", "0/3000148")
    184
    >>> replay_lag_bytes(None, "0/3000148") is None
    True
    """
    if primary_current_lsn is None or standby_replay_lsn is None:
        return None
    return max(0, lsn_diff(primary_current_lsn, standby_replay_lsn))


def replay_lag_seconds(lag_bytes: int | None, node: NodeStatus) -> float | None:
    """Age of the last replayed commit while the standby is behind; 0 once it has caught up.

    Measured against the primary's LSN, not the standby's own receive LSN, so a cut link does
    not read as "no lag" (both of the standby's LSNs freeze together).
    """
    if lag_bytes is None:
        return None
    if lag_bytes == 0:
        return 0.0
    if node.last_replay_at is None:
        return None
    return max(0.0, (node.server_now - node.last_replay_at).total_seconds())
