"""The holding-area collector: what file sync holds back at this agent's own site (every file it
replaced or deleted there, kept `holding_retention_days`; dcctl/filesync/holding.py), in bytes and
files per store. One `find` per store, so it runs at most every HOLDING_INTERVAL seconds and the
values are cached in between (HELP says so)."""
from __future__ import annotations

from dataclasses import dataclass

from dcctl.agent.filesync_task import own_transport
from dcctl.agent.metrics import Sample, sample
from dcctl.agent.setup import AgentSetup
from dcctl.filesync import holding

HOLDING_INTERVAL = 60.0  # seconds: a walk of the holding area is not worth doing on every collection
HOLDING_TIMEOUT = 300.0  # the find of one large holding area


@dataclass(frozen=True)
class HoldingSnapshot:
    held: dict[str, tuple[int, int]]  # store -> (bytes, files); (0, 0) before anything was held


class HoldingSource:
    collector = "holding"

    def __init__(self, setup: AgentSetup, service: str):
        self.setup = setup
        self.service = service
        self.site = setup.config.services[service].sites[setup.site]
        self.interval = max(setup.agent.interval, HOLDING_INTERVAL)
        self.timeout = HOLDING_TIMEOUT

    def collect(self) -> HoldingSnapshot:
        transport = own_transport(self.setup.site, self.site)
        held = {}
        for store in sorted(self.site.file_stores):
            held[store] = holding.size(transport, self.site.state_dir, self.service, store) or (0, 0)
        return HoldingSnapshot(held)

    def samples(self, snapshot: HoldingSnapshot) -> list[Sample]:
        out = []
        for store, (size, files) in snapshot.held.items():
            labels = {"service": self.service, "site": self.setup.site, "store": store}
            out.append(sample("dcctl_filesync_holding_bytes", size, **labels))
            out.append(sample("dcctl_filesync_holding_files", files, **labels))
        return out

    def changes(self, old: HoldingSnapshot | None, new: HoldingSnapshot) -> list[str]:
        return []
