"""Immutable snapshots of what dcctl observed, and the generation it recorded. Built once, then
passed to pure decisions."""
from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # model sits below every package: a type-only import keeps the arrow from pointing up
    from dcctl.filesync.state import SyncStatus


class Role(str, enum.Enum):
    PRIMARY = "primary"
    STANDBY = "standby"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SlotStatus:
    name: str
    active: bool
    restart_lsn: str | None
    retained_bytes: int | None
    wal_status: str | None


@dataclass(frozen=True)
class NodeStatus:
    """One round trip to one PostgreSQL server."""

    in_recovery: bool
    timeline: int | None
    current_lsn: str | None  # primary only
    receive_lsn: str | None  # standby only
    replay_lsn: str | None  # standby only
    last_replay_at: datetime | None
    replay_paused: bool
    server_now: datetime
    receiver_status: str | None  # pg_stat_wal_receiver.status, e.g. "streaming"
    receiver_slot: str | None
    upstream: str | None  # host:port the WAL receiver streams from
    server_version: int
    slots: tuple[SlotStatus, ...] = ()
    settings: dict[str, str] = field(default_factory=dict)
    clock_offset: float | None = None  # server clock minus dcctl's clock, seconds (query midpoint)
    receipt_age: float | None = None  # standby: seconds since its WAL receiver last heard from the primary

    @property
    def role(self) -> Role:
        return Role.STANDBY if self.in_recovery else Role.PRIMARY


@dataclass(frozen=True)
class DiskUsage:
    label: str  # data, wal, store:<name>
    path: str
    total_bytes: int | None
    free_bytes: int | None
    error: str | None = None

    @property
    def free_ratio(self) -> float | None:
        if not self.total_bytes or self.free_bytes is None:
            return None
        return self.free_bytes / self.total_bytes


@dataclass(frozen=True)
class SiteStatus:
    """What one site told us, or why it did not."""

    site: str
    transport: str
    reachable: bool | None  # None: not asked (no answer before the deadline)
    transport_error: str | None
    postgres: str  # host:port
    node: NodeStatus | None
    postgres_error: str | None
    disks: tuple[DiskUsage, ...] = ()
    disk_error: str | None = None
    filesync: SyncStatus | None = None  # what the site's agent last wrote about its file stores, if anything

    @property
    def postgres_up(self) -> bool:
        return self.node is not None

    def answered(self) -> NodeStatus:
        """The node's status, where the caller has already established that it answered (its role
        is known, or the refusals that say otherwise came first)."""
        if self.node is None:
            raise ValueError(f"site {self.site}: PostgreSQL did not answer")
        return self.node

    @property
    def role(self) -> Role:
        return self.node.role if self.node else Role.UNKNOWN


@dataclass(frozen=True)
class ServiceView:
    service: str
    sites: tuple[SiteStatus, ...]
    taken_at: datetime

    def primaries(self) -> list[SiteStatus]:
        return [s for s in self.sites if s.role is Role.PRIMARY]

    def site(self, name: str) -> SiteStatus:
        return next(s for s in self.sites if s.site == name)


@dataclass(frozen=True)
class Generation:
    """The recorded generation: after each promotion, the timeline of the new primary and the sites
    fenced on the way (read and written by dcctl/ops/generation.py, judged by dcctl/generation_rules.py)."""

    service: str
    generation: int
    primary: str
    fenced: list[str] = field(default_factory=list)
    operation: str | None = None
    at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"
