"""One round trip to a PostgreSQL node -> NodeStatus."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import psycopg
from psycopg.rows import DictRow

from dcctl.config.schema import PostgresConfig
from dcctl.errors import UnreachableError
from dcctl.model import NodeStatus, SlotStatus
from dcctl.pg import queries
from dcctl.pg.session import connect, first_line


def probe_node(node: PostgresConfig, site: str, purpose: str = "status",
               keep: dict[str, psycopg.Connection[DictRow]] | None = None) -> NodeStatus:
    """keep: receives the connection, open, under `site` (for the operation planned on this
    snapshot: a new connection costs a handshake and authentication); closed otherwise."""
    conn = connect(node, purpose, site)
    try:
        sent = time.time()
        row = conn.execute(queries.NODE_STATUS).fetchone()
        received = time.time()
    except psycopg.Error as exc:
        conn.close()
        raise UnreachableError(f"PostgreSQL at {node.host}:{node.port} (site {site}) did not answer "
                               f"the status query: {first_line(exc)}") from None
    if keep is None:
        conn.close()
    else:
        keep[site] = conn
    status = node_status_from_row(row)
    return replace(status, clock_offset=status.server_now.timestamp() - (sent + received) / 2)


def node_status_from_row(row: dict[str, Any]) -> NodeStatus:
    in_recovery = bool(row["in_recovery"])
    if in_recovery:
        timeline = row["received_timeline"] or row["checkpoint_timeline"]
    else:
        timeline = row["primary_timeline"]
    slots = tuple(
        SlotStatus(name=s["name"], active=bool(s["active"]), restart_lsn=s["restart_lsn"],
                   retained_bytes=None if s["retained_bytes"] is None else int(s["retained_bytes"]),
                   wal_status=s["wal_status"])
        for s in row["slots"] or ()
    )
    return NodeStatus(
        in_recovery=in_recovery, timeline=timeline, current_lsn=row["current_lsn"],
        receive_lsn=row["receive_lsn"] if in_recovery else None,
        replay_lsn=row["replay_lsn"] if in_recovery else None,
        last_replay_at=row["last_replay_at"], replay_paused=bool(row["replay_paused"]),
        server_now=row["server_now"], receiver_status=row["receiver_status"], receiver_slot=row["receiver_slot"],
        upstream=row["upstream"], server_version=row["server_version"], slots=slots,
        settings=dict(row["settings"] or {}),
        receipt_age=row.get("receipt_age") if in_recovery else None,
    )
