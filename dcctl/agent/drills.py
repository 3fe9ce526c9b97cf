"""The drill collector: the outcome, time, duration, RTO and RPO of the last drill of each
service, read from the drill records dcctl leaves in its state directory (cheap: a directory
listing and one small JSON file per collection)."""
from __future__ import annotations


from dataclasses import dataclass
from pathlib import Path

from dcctl.agent.metrics import Sample, sample
from dcctl.agent.setup import AgentSetup
from dcctl.ops.journal import operations_dir


@dataclass(frozen=True)
class DrillSnapshot:
    last: dict | None  # the newest drill report
    last_success_at: float | None


def latest_drills(state_dir: str, service: str) -> DrillSnapshot:
    last, last_success = None, None
    base = operations_dir(state_dir)
    if base.exists():
        for directory in sorted(p for p in base.iterdir() if "-drill-" in p.name):
            report = _report(directory)
            if report is None or report.get("service") != service:
                continue
            last = report
            if report["outcome"] == "success":
                last_success = report["ended_ts"]
    return DrillSnapshot(last, last_success)


def _report(directory: Path) -> dict | None:
    from dcctl.ops.journal import Journal
    from dcctl.ops.report import build_report

    entries = Journal(directory / "journal.jsonl").entries()
    if not entries or entries[-1].get("event") != "finish":
        return None  # still running, or killed: its outcome is not known yet
    return {**build_report(entries), "ended_ts": entries[-1]["ts"]}


def drill_samples(snapshot: DrillSnapshot, service: str) -> list[Sample]:
    samples = []
    if snapshot.last_success_at is not None:
        samples.append(sample("dcctl_drill_last_success_timestamp_seconds", snapshot.last_success_at,
                              service=service))
    last = snapshot.last
    if last is None:
        return samples
    observed = last["observed"]
    samples += [sample("dcctl_drill_last_run_timestamp_seconds", last["ended_ts"], service=service),
                sample("dcctl_drill_last_succeeded", last["outcome"] == "success", service=service),
                sample("dcctl_drill_last_duration_seconds", last["wall_seconds"], service=service)]
    if observed.get("rto_seconds") is not None:
        samples.append(sample("dcctl_drill_last_rto_seconds", observed["rto_seconds"], service=service))
    if observed.get("rpo_seconds") is not None:
        samples.append(sample("dcctl_drill_last_rpo_seconds", observed["rpo_seconds"], service=service))
    return samples


class DrillSource:
    collector = "drills"

    def __init__(self, setup: AgentSetup, service: str):
        self.setup = setup
        self.service = service
        self.interval = setup.agent.interval
        self.timeout = 30.0

    def collect(self) -> DrillSnapshot:
        return latest_drills(self.setup.config.state_dir, self.service)

    def samples(self, snapshot: DrillSnapshot) -> list[Sample]:
        return drill_samples(snapshot, self.service)

    def changes(self, old: DrillSnapshot | None, new: DrillSnapshot) -> list[str]:
        if new.last is None or (old is not None and old.last is not None
                                and old.last["operation"] == new.last["operation"]):
            return []
        return [f"drill {new.last['operation']} of {self.service}: {new.last['outcome']}"]



