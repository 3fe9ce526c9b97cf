"""The status collector: both sites' status (transport, PostgreSQL, disks) and every check.

One collection is one `gather_view`, which asks both sites at once and gives up on a site
after `site_timeout`, then the pure checks of `dcctl check` on that snapshot.
"""
from __future__ import annotations

import time

from dcctl.agent.metrics import Sample
from dcctl.agent.setup import AgentSetup
from dcctl.agent.status_metrics import StatusSnapshot, status_changes, status_samples
from dcctl.agent.fencing import fence_if_stale
from dcctl.checks.catalog import Facts, run_checks
from dcctl.ops.generation import read_local
from dcctl.ops.journal import last_success
from dcctl.topology import gather_view


class StatusSource:
    collector = "status"

    def __init__(self, setup: AgentSetup, service: str):
        self.setup = setup
        self.service = service
        self.interval = setup.agent.interval
        self.timeout = setup.config.site_timeout

    def collect(self) -> StatusSnapshot:
        config = self.setup.config
        service = config.services[self.service]
        view = gather_view(config, self.service, service, with_disks=True)
        recorded = read_local(config.state_dir, self.service)
        results = run_checks(Facts(view, service.thresholds, now=time.time(), recorded_generation=recorded,
                                   last_drill_success=last_success(config.state_dir, "drill", self.service)))
        if self.setup.agent.fence_stale_primary:
            fence_if_stale(self.setup, self.service, view, recorded)
        return StatusSnapshot(view, tuple(results))

    def samples(self, snapshot: StatusSnapshot) -> list[Sample]:
        return status_samples(snapshot, self.setup.site)

    def changes(self, old: StatusSnapshot | None, new: StatusSnapshot) -> list[str]:
        return status_changes(old, new, self.setup.site)
