"""Acting on one pooler for one service: look, pause, repoint, resume. Every function observes
first, so each can run twice (a resumed operation, the agent after a crash)."""
from __future__ import annotations

from typing import Callable

from dcctl.config.schema import PoolerConfig, ServiceConfig
from dcctl.pooler.console import AdminConsole
from dcctl.pooler.decide import PoolerState, blocking_clients, pooler_state, render_databases_file, served_databases
from dcctl.transport.base import Transport


def observe(console: AdminConsole, service: ServiceConfig) -> PoolerState:
    served = served_databases(console.pooler, service)
    return pooler_state(console.pooler.name, served, console.databases(), console.pools())


def pause(console: AdminConsole, service: ServiceConfig) -> list[str]:
    """PAUSE each served database not paused yet, within pause_timeout for them all. Returns the
    blocking clients ([] when paused); on a timeout the pooler is resumed before returning."""
    pooler = console.pooler
    served = served_databases(pooler, service)
    state = observe(console, service)
    for name in served:
        if state.paused.get(name):
            continue
        if not console.pause(name, pooler.pause_timeout):
            blockers = blocking_clients(console.clients(), console.servers(), served)
            resume(console, service)
            return blockers or ["(no client holds a server connection any more: the transactions ended just "
                                "after the deadline)"]
    return []


def resume(console: AdminConsole, service: ServiceConfig) -> list[str]:
    """RESUME each served database that is paused; returns the names resumed."""
    state = observe(console, service)
    resumed = []
    for name in served_databases(console.pooler, service):
        if state.paused.get(name):
            console.resume(name)
            resumed.append(name)
    return resumed


def repoint(console: AdminConsole, service: ServiceConfig, host: str, port: int,
            transport_for: Callable[[PoolerConfig], Transport]) -> bool:
    """Point the served databases at host:port: rewrite the include file atomically, RELOAD.
    False when the pooler already pointed there (nothing written)."""
    pooler = console.pooler
    if pooler.console_only or observe(console, service).points_at(host, port):
        return False
    assert pooler.databases_file  # load.py requires it unless console_only
    text = render_databases_file(served_databases(pooler, service), host, port, pooler.name)
    transport_for(pooler).write_file(pooler.databases_file, text.encode(), mode=0o644)
    console.reload()
    return True
