"""What dcctl decides about a PgBouncer from what its admin console shows (pure).

The console's rows come in as dicts (SHOW DATABASES, SHOW POOLS, SHOW CLIENTS, SHOW SERVERS);
everything here is a function of them and of the config, so each decision is unit-tested
without a PgBouncer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from dcctl.config.schema import PoolerConfig, ServiceConfig

Row = Mapping[str, Any]


def served_databases(pooler: PoolerConfig, service: ServiceConfig) -> list[str]:
    """The PgBouncer database names this pooler serves for the service."""
    if pooler.databases:
        return list(pooler.databases)
    return [service.database] if service.database else []


def render_databases_file(names: Sequence[str], host: str, port: int, pooler_name: str) -> str:
    """The include file dcctl owns: a [databases] section pointing every name at the primary.

    >>> print(render_databases_file(["massar"], "10.0.0.2", 5432, "rabat-bouncer"), end="")
    ; written by dcctl for pooler rabat-bouncer: every switchover and failover rewrites it
    [databases]
    massar = host=10.0.0.2 port=5432 dbname=massar
    """
    lines = [f"; written by dcctl for pooler {pooler_name}: every switchover and failover rewrites it",
             "[databases]"]
    lines += [f"{name} = host={host} port={port} dbname={name}" for name in names]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PoolerState:
    """One look at a pooler, for the databases it serves for one service."""

    name: str
    targets: dict[str, tuple[str, int]]  # database name -> (host, port) from SHOW DATABASES
    paused: dict[str, bool]  # database name -> paused
    clients_waiting: int  # SHOW POOLS cl_waiting, summed over the served databases
    missing: tuple[str, ...] = ()  # served names SHOW DATABASES does not list

    @property
    def any_paused(self) -> bool:
        return any(self.paused.values())

    def points_at(self, host: str, port: int) -> bool:
        return bool(self.targets) and not self.missing and all(t == (host, port) for t in self.targets.values())

    def describe_target(self) -> str:
        shown = sorted({f"{h}:{p}" for h, p in self.targets.values()})
        return ", ".join(shown) if shown else "nothing"


def pooler_state(name: str, served: Sequence[str], databases: Sequence[Row], pools: Sequence[Row]) -> PoolerState:
    """Read SHOW DATABASES and SHOW POOLS rows for the served database names.

    >>> rows = [{"name": "massar", "host": "127.0.0.1", "port": 5432, "paused": 1},
    ...         {"name": "pgbouncer", "host": None, "port": 6432, "paused": 0}]
    >>> s = pooler_state("b", ["massar"], rows, [{"database": "massar", "cl_waiting": 3}])
    >>> s.any_paused, s.clients_waiting, s.points_at("127.0.0.1", 5432)
    (True, 3, True)
    """
    targets, paused = {}, {}
    for row in databases:
        if row.get("name") in served:
            targets[row["name"]] = (str(row.get("host") or ""), int(row.get("port") or 0))
            paused[row["name"]] = bool(int(row.get("paused") or 0))
    waiting = sum(int(row.get("cl_waiting") or 0) for row in pools if row.get("database") in served)
    missing = tuple(n for n in served if n not in targets)
    return PoolerState(name, targets, paused, waiting, missing)


def blocking_clients(clients: Sequence[Row], servers: Sequence[Row], served: Sequence[str]) -> list[str]:
    """The clients a PAUSE waits for: those holding a server connection (a transaction in
    flight, in transaction pooling), each named as an operator can find it.

    >>> clients = [{"ptr": "0x1", "user": "app", "database": "massar", "addr": "10.1.1.1", "port": 50000,
    ...             "application_name": "billing", "state": "active", "connect_time": "2026-12-04 10:00:00 UTC",
    ...             "request_time": "2026-12-04 10:00:05 UTC", "link": "0x9"},
    ...            {"ptr": "0x2", "user": "app", "database": "massar", "addr": "10.1.1.2", "port": 50001,
    ...             "application_name": "", "state": "active", "link": ""}]
    >>> servers = [{"ptr": "0x9", "link": "0x1", "state": "active", "database": "massar"}]
    >>> blocking_clients(clients, servers, ["massar"])
    ['user app from 10.1.1.1:50000 (application billing), state active, in its transaction since 2026-12-04 10:00:05 UTC (connected 2026-12-04 10:00:00 UTC)']
    """
    linked = {str(s.get("link")) for s in servers if s.get("link") and s.get("database") in served}
    found = []
    for c in clients:
        if c.get("database") not in served or not (c.get("link") or str(c.get("ptr")) in linked):
            continue
        app = c.get("application_name") or "no application_name"
        app = f"application {app}" if c.get("application_name") else app
        found.append(f"user {c.get('user')} from {c.get('addr')}:{c.get('port')} ({app}), state {c.get('state')}, "
                     f"in its transaction since {c.get('request_time')} (connected {c.get('connect_time')})")
    return found


# What the agent does about a pooler it sees paused.
LEAVE, WAIT, UNPAUSE = "leave", "wait", "unpause"


def stuck_pause(paused_for: float | None, deadline: float, lock: str | None) -> tuple[str, str]:
    """(decision, sentence): the agent resumes a pooler paused longer than `deadline` when no
    live operation holds the service lock (`lock` describes the live holder, or is None).

    >>> stuck_pause(None, 60, None)[0], stuck_pause(5, 60, None)[0], stuck_pause(61, 60, "op x")[0]
    ('leave', 'wait', 'wait')
    >>> stuck_pause(61, 60, None)
    ('unpause', 'paused for 61 s (more than 60 s) and no operation holds the lock: resuming it')
    """
    if paused_for is None:
        return LEAVE, "not paused"
    if paused_for <= deadline:
        return WAIT, f"paused for {paused_for:.0f} s (the agent resumes it after {deadline:g} s)"
    if lock is not None:
        return WAIT, f"paused for {paused_for:.0f} s, but {lock} holds the lock: left to it"
    return UNPAUSE, (f"paused for {paused_for:.0f} s (more than {deadline:g} s) and no operation holds the lock: "
                     f"resuming it")
