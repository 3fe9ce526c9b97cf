"""The pooler collector: each PgBouncer of the service that this agent watches (those at its site;
those at no site are watched by both agents) is looked at every interval: up, paused, clients
waiting, and whether it points at the current primary.

It also makes sure no pooler stays paused: a switchover pauses for a fraction of a second, so a
pooler seen paused for longer than its stuck_pause_after while no live operation holds the
service lock was left so by a dead dcctl, and the agent resumes it (applications queued in it
would otherwise wait forever). It is logged, counted, and the pooler alerts say so.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from dcctl.agent.metrics import Sample, sample
from dcctl.agent.setup import AgentSetup
from dcctl.config.schema import PoolerConfig
from dcctl.errors import DcctlError
from dcctl.ops.lock import parse_owner, site_lock_path
from dcctl.pg import queries
from dcctl.pg.session import connect, one_row
from dcctl.pooler import control
from dcctl.pooler.console import AdminConsole
from dcctl.pooler.decide import UNPAUSE, PoolerState, stuck_pause

log = logging.getLogger("dcctl.agent")


@dataclass(frozen=True)
class PoolerLook:
    name: str
    state: PoolerState | None  # None: the console did not answer
    error: str | None
    paused_for: float | None
    action: str  # the sentence of the stuck-pause decision


@dataclass(frozen=True)
class PoolersSnapshot:
    primary: tuple[str, int] | None
    looks: list[PoolerLook] = field(default_factory=list)


def watched(setup: AgentSetup, service: str) -> list[PoolerConfig]:
    return [p for p in setup.config.services[service].poolers if p.site in (None, setup.site)]


def live_lock_holder(setup: AgentSetup, service: str) -> str | None:
    """The live operation holding the service's lock at this site, described; None when the lock
    is free or its owner died on this host. A lock owned elsewhere is never guessed dead."""
    path = Path(site_lock_path(setup.config.services[service].sites[setup.site].state_dir, service))
    try:
        text = path.read_text(errors="surrogateescape")
    except FileNotFoundError:
        return None
    owner = parse_owner(text)
    return None if owner.stale() else owner.describe()


class PoolerSource:
    collector = "poolers"

    def __init__(self, setup: AgentSetup, service: str):
        self.setup = setup
        self.service = service
        self.interval = setup.agent.interval
        self.timeout = 30.0
        self.paused_since: dict[str, float] = {}  # pooler -> time.monotonic() it was first seen paused
        self.resumes: dict[str, int] = {}

    def current_primary(self) -> tuple[str, int] | None:
        service = self.setup.config.services[self.service]
        primaries = []
        for site, cfg in service.sites.items():
            try:
                with connect(cfg.postgres, "agent poolers", site) as conn:
                    if not one_row(conn.execute(queries.IN_RECOVERY))["in_recovery"]:
                        primaries.append((cfg.postgres.host, cfg.postgres.port))
            except DcctlError:
                continue
        return primaries[0] if len(primaries) == 1 else None

    def collect(self) -> PoolersSnapshot:
        primary = self.current_primary()
        return PoolersSnapshot(primary, [self.look(p) for p in watched(self.setup, self.service)])

    def look(self, pooler: PoolerConfig) -> PoolerLook:
        service = self.setup.config.services[self.service]
        try:
            with AdminConsole(pooler, "agent") as console:
                state = control.observe(console, service)
                paused_for = self._paused_for(pooler.name, state.any_paused)
                decision, sentence = stuck_pause(paused_for, pooler.stuck_pause_after,
                                                 live_lock_holder(self.setup, self.service))
                if decision == UNPAUSE:
                    control.resume(console, service)
                    log.warning("pooler %s of %s: %s", pooler.name, self.service, sentence)
                    self.resumes[pooler.name] = self.resumes.get(pooler.name, 0) + 1
                    self.paused_since.pop(pooler.name, None)
                    state = control.observe(console, service)
                    paused_for = self._paused_for(pooler.name, state.any_paused)
                return PoolerLook(pooler.name, state, None, paused_for, sentence)
        except DcctlError as exc:
            return PoolerLook(pooler.name, None, exc.message, None, "unreachable")

    def _paused_for(self, name: str, paused: bool) -> float | None:
        if not paused:
            self.paused_since.pop(name, None)
            return None
        return time.monotonic() - self.paused_since.setdefault(name, time.monotonic())

    def samples(self, snapshot: PoolersSnapshot) -> list[Sample]:
        out = []
        for look in snapshot.looks:
            labels = {"service": self.service, "pooler": look.name}
            out.append(sample("dcctl_pooler_up", look.state is not None, **labels))
            out.append(sample("dcctl_pooler_agent_resumes_total", self.resumes.get(look.name, 0), **labels))
            if look.state is None:
                continue
            out.append(sample("dcctl_pooler_paused", look.state.any_paused, **labels))
            out.append(sample("dcctl_pooler_paused_seconds", look.paused_for or 0.0, **labels))
            out.append(sample("dcctl_pooler_clients_waiting", look.state.clients_waiting, **labels))
            if snapshot.primary is not None:
                out.append(sample("dcctl_pooler_points_at_primary", look.state.points_at(*snapshot.primary),
                                  **labels))
        return out

    def changes(self, old: PoolersSnapshot | None, new: PoolersSnapshot) -> list[str]:
        before = {look.name: look for look in (old.looks if old else [])}
        said = []
        for look in new.looks:
            prior = before.get(look.name)
            if look.error and (prior is None or not prior.error):
                said.append(f"pooler {look.name} of {self.service}: {look.error}")
            if look.state and new.primary and not look.state.points_at(*new.primary):
                if prior is None or prior.state is None or prior.state.points_at(*new.primary):
                    said.append(f"pooler {look.name} of {self.service} points at {look.state.describe_target()}, "
                                f"not at the primary {new.primary[0]}:{new.primary[1]}")
        return said
