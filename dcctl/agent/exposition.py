"""The prometheus-client side: one custom Collector that turns the tasks' cached samples into
metric families on every scrape (so a label value that disappears, disappears from /metrics)."""
from __future__ import annotations

import platform
import time
from typing import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dcctl.agent.collector import Task
from dcctl import __version__
from dcctl.agent.metrics import METRICS, Sample, sample


def families(samples: Iterable[Sample]) -> list[Metric]:
    """Group samples into families, in the order of metrics.py; families without samples are left out."""
    by_name: dict[str, list[Sample]] = {}
    for s in samples:
        if s.name not in METRICS:
            raise KeyError(f"metric {s.name} is not declared in dcctl/agent/metrics.py")
        by_name.setdefault(s.name, []).append(s)
    out: list[Metric] = []
    for name, spec in METRICS.items():
        if name not in by_name:
            continue
        family_class = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
        family = family_class(name, spec.help, labels=spec.labels)
        for s in by_name[name]:
            family.add_metric([s.labels[label] for label in spec.labels], s.value)
        out.append(family)
    return out


class TaskCollector(Collector):
    """Reads every task's cached samples; never calls into PostgreSQL or a transport."""

    def __init__(self, tasks: list[Task], clock: Callable[[], float] = time.time):
        self.tasks = tasks
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        yield from families([build_info(), *(s for task in self.tasks for s in task.samples(now))])

    def describe(self) -> list[Metric]:
        return []  # families vary with the snapshot; nothing to pre-declare


def build_info() -> Sample:
    """A series of its own, so that a role change does not churn the version series (and back)."""
    return sample("dcctl_build_info", 1, version=__version__, python_version=platform.python_version())


def make_registry(tasks: list[Task]) -> CollectorRegistry:
    """The agent's registry: its own metrics plus the standard process_* ones (CPU, memory, fds)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TaskCollector(tasks))
    ProcessCollector(registry=registry)
    return registry
