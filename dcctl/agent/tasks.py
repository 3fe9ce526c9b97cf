"""THE registry of the agent's background tasks.

To add work to the agent (file sync, drills), write one module with a function
`tasks(setup: AgentSetup) -> list[Task]` and add it to FACTORIES; declare its metrics in
metrics.py and document them in docs/metrics.md.
"""
from __future__ import annotations

from typing import Callable

from dcctl.agent.collector import PeriodicCollector, Task
from dcctl.agent.setup import AgentSetup


def status_tasks(setup: AgentSetup) -> list[Task]:
    from dcctl.agent.status import StatusSource

    return [PeriodicCollector(StatusSource(setup, service)) for service in setup.services]


def drill_tasks(setup: AgentSetup) -> list[Task]:
    from dcctl.agent.drills import DrillSource

    return [PeriodicCollector(DrillSource(setup, service)) for service in setup.services]


def site_operation_tasks(setup: AgentSetup) -> list[Task]:
    from dcctl.agent.site_ops import SiteOperationSource

    return [PeriodicCollector(SiteOperationSource(setup))] if len(setup.config.services) > 1 else []


def holding_tasks(setup: AgentSetup) -> list[Task]:
    from dcctl.agent.holding import HoldingSource

    return [PeriodicCollector(HoldingSource(setup, service)) for service in setup.services
            if setup.config.services[service].sites[setup.site].file_stores]


def filesync_tasks(setup: AgentSetup) -> list[Task]:
    from dcctl.agent.filesync_task import filesync_tasks as build

    return build(setup)


def pooler_tasks(setup: AgentSetup) -> list[Task]:
    from dcctl.agent.poolers import PoolerSource, watched

    return [PeriodicCollector(PoolerSource(setup, service)) for service in setup.services
            if watched(setup, service)]


def watch_tasks(setup: AgentSetup) -> list[Task]:
    from dcctl.agent.watcher import watch_tasks as build

    return build(setup)


FACTORIES: list[Callable[[AgentSetup], list[Task]]] = [
    status_tasks,
    drill_tasks,
    site_operation_tasks,
    filesync_tasks,
    holding_tasks,
    pooler_tasks,
    watch_tasks,  # last: `agent run --once` reports the status it found before the watch acts on it
]


def build_tasks(setup: AgentSetup) -> list[Task]:
    return [task for factory in FACTORIES for task in factory(setup)]
