"""The agent's metrics as pure functions of a snapshot: names, labels, values, log events."""
import doctest
import importlib
import platform
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dcctl import __version__
from dcctl.agent.exposition import TaskCollector, build_info, families
from dcctl.agent.metrics import METRICS, counts_by_reason, sample
from dcctl.agent.status_metrics import StatusSnapshot, status_changes, status_samples, worst_by_name
from dcctl.checks.catalog import Facts, run_checks
from dcctl.checks.result import CheckResult, Status
from dcctl.config.schema import Thresholds
from dcctl.lab.prometheus import PROMTOOL
from dcctl.model import SlotStatus
from tests.unit.test_pure_layer import FORBIDDEN, PACKAGE, imported_modules
from tests.unit.views import healthy, primary, site, standby, view

REPO = Path(__file__).parents[2]


def snapshot(v):
    return StatusSnapshot(v, tuple(run_checks(Facts(v, Thresholds(), now=0.0))))


def values(samples, name):
    """{frozenset(labels without service): value} of one metric."""
    return {frozenset((k, v) for k, v in s.labels.items() if k != "service"): s.value
            for s in samples if s.name == name}


def one(samples, name, **labels):
    found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


@pytest.mark.parametrize("relative", ["agent/metrics.py", "agent/setup.py", "agent/status_metrics.py"])
def test_the_agent_pure_modules_do_no_io(relative):
    assert not imported_modules(PACKAGE / relative) & FORBIDDEN


@pytest.mark.parametrize("module", ["dcctl.agent.metrics", "dcctl.agent.status_metrics", "dcctl.agent.auth",
                                    "dcctl.agent.server"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("spec", METRICS.values(), ids=list(METRICS))
def test_names_follow_prometheus_conventions(spec):
    assert re.fullmatch(r"dcctl_[a-z][a-z0-9_]*", spec.name)
    assert spec.name.endswith("_total") == (spec.kind == "counter")
    for bad in ("_ms", "_milliseconds", "_percent", "_kb", "_mb", "_count", "_sum", "_bucket"):
        assert not spec.name.endswith(bad)
    assert spec.help and not spec.help[0].islower() and not spec.help.endswith(".")
    assert "instance" not in spec.labels and "job" not in spec.labels


def test_every_metric_is_documented():
    text = (REPO / "docs" / "metrics.md").read_text()
    assert [name for name in METRICS if f"`{name}`" not in text] == []


def test_sample_refuses_undeclared_names_and_wrong_labels():
    with pytest.raises(KeyError):
        sample("dcctl_nope", 1)
    with pytest.raises(ValueError, match="takes labels"):
        sample("dcctl_pg_up", 1, service="massar")


def test_the_standby_agent_exports_its_lag_streaming_and_role():
    samples = status_samples(snapshot(view(site("rabat", primary(lsn="0/5000400")),
                                           site("backup", standby(replay="0/5000000", behind_seconds=4)))),
                             "backup")
    assert one(samples, "dcctl_site_info", site="backup", role="standby") == 1
    assert one(samples, "dcctl_pg_server_version", site="backup") == 150018
    assert one(samples, "dcctl_pg_up", site="backup") == 1
    assert one(samples, "dcctl_pg_in_recovery", site="backup") == 1
    assert one(samples, "dcctl_replication_lag_bytes", site="backup") == 0x400
    assert one(samples, "dcctl_replication_lag_seconds", site="backup") == 4
    assert one(samples, "dcctl_replication_streaming", site="backup") == 1
    assert one(samples, "dcctl_pg_replay_lsn_bytes", site="backup") == 0x5000000
    assert one(samples, "dcctl_pg_receive_lsn_bytes", site="backup") == 0x5000000
    assert one(samples, "dcctl_pg_timeline", site="backup") == 1
    assert values(samples, "dcctl_peer_up") == {frozenset({("site", "rabat"), ("target", "transport")}): 1,
                                                frozenset({("site", "rabat"), ("target", "postgres")}): 1}
    assert one(samples, "dcctl_service_primaries") == 1
    # node metrics are the agent's own site only; the primary's own agent exports its LSN and slots
    assert {s.labels["site"] for s in samples if "site" in s.labels and s.name != "dcctl_peer_up"} == {"backup"}
    assert not values(samples, "dcctl_pg_current_lsn_bytes") and not values(samples, "dcctl_replication_slot_active")


def test_the_primary_agent_exports_its_lsn_and_slots():
    slots = (SlotStatus("dcctl_backup", True, "0/5000000", 4096, "reserved"),
             SlotStatus("old", False, "0/1000000", None, "lost"))
    samples = status_samples(snapshot(view(site("rabat", primary(slots=slots)), site("backup", standby()))),
                             "rabat")
    assert one(samples, "dcctl_site_info", role="primary") == 1
    assert one(samples, "dcctl_pg_in_recovery", site="rabat") == 0
    assert one(samples, "dcctl_pg_current_lsn_bytes", site="rabat") == 0x5000000
    assert values(samples, "dcctl_replication_slot_active") == {
        frozenset({("site", "rabat"), ("slot", "dcctl_backup")}): 1, frozenset({("site", "rabat"), ("slot", "old")}): 0}
    assert one(samples, "dcctl_replication_slot_retained_bytes", slot="dcctl_backup") == 4096
    assert one(samples, "dcctl_replication_slot_retained_bytes", slot="old") == 0
    for standby_only in ("dcctl_replication_lag_bytes", "dcctl_replication_streaming", "dcctl_pg_replay_paused"):
        assert not values(samples, standby_only)


def test_volumes_of_the_own_site_only():
    samples = status_samples(snapshot(healthy()), "rabat")
    assert values(samples, "dcctl_volume_avail_bytes") == {
        frozenset({("site", "rabat"), ("volume", "data")}): 500, frozenset({("site", "rabat"), ("volume", "wal")}): 500}
    assert one(samples, "dcctl_volume_size_bytes", volume="wal") == 1000


def test_a_dead_own_postgres_leaves_only_up_0_and_role_unknown():
    samples = status_samples(snapshot(view(site("rabat", primary()),
                                           site("backup", None, error="connection refused"))), "backup")
    assert one(samples, "dcctl_pg_up", site="backup") == 0
    assert one(samples, "dcctl_site_info", role="unknown") == 1
    for absent in ("dcctl_pg_server_version", "dcctl_pg_in_recovery", "dcctl_pg_timeline", "dcctl_replication_lag_bytes",
                   "dcctl_replication_streaming"):
        assert not values(samples, absent)
    assert one(samples, "dcctl_check_status", check="replication_streaming") == Status.CRIT


def test_an_unreachable_peer_is_up_0_and_the_lag_is_absent_not_zero():
    samples = status_samples(snapshot(view(site("rabat", None, reachable=False, error="timeout"),
                                           site("backup", standby()))), "backup")
    assert one(samples, "dcctl_peer_up", target="transport") == 0
    assert one(samples, "dcctl_peer_up", target="postgres") == 0
    assert one(samples, "dcctl_service_primaries") == 0
    assert not values(samples, "dcctl_replication_lag_bytes")
    assert one(samples, "dcctl_replication_streaming") == 1  # its receiver still says so; lag is unknown


def test_two_primaries_are_counted():
    samples = status_samples(snapshot(view(site("rabat", primary()), site("backup", primary()))), "backup")
    assert one(samples, "dcctl_service_primaries") == 2
    assert one(samples, "dcctl_check_status", check="one_primary") == Status.CRIT


def test_check_status_is_the_worst_result_per_result_name():
    v = healthy()
    results = (CheckResult("postgres_up", Status.OK, "", "rabat"), CheckResult("postgres_up", Status.CRIT, "", "b"),
               CheckResult("drill_age", Status.UNKNOWN, ""), CheckResult("disk_free", Status.UNKNOWN, "", "rabat"),
               CheckResult("disk_free", Status.WARN, "", "backup"))
    samples = status_samples(StatusSnapshot(v, results), "rabat")
    assert values(samples, "dcctl_check_status") == {
        frozenset({("check", "postgres_up")}): 2, frozenset({("check", "drill_age")}): 3,
        frozenset({("check", "disk_free")}): 1}
    assert worst_by_name(results)["postgres_up"].site == "b"


def test_lag_is_reported_per_result_name():
    samples = status_samples(snapshot(healthy()), "rabat")
    checks = {dict(k)["check"] for k in values(samples, "dcctl_check_status")}
    assert {"replication_lag_bytes", "replication_lag_seconds", "replication_streaming", "one_primary",
            "replication_slots"} <= checks
    assert "replication_lag" not in checks


def test_events_name_role_changes_and_check_transitions():
    before = snapshot(healthy())
    after = snapshot(view(site("rabat", primary()), site("backup", None, error="connection refused")))
    events = status_changes(before, after, "backup")
    assert "massar: backup is now unknown (was standby)" in events
    assert any(e.startswith("massar: check replication_streaming OK -> CRIT: standby backup is down") for e in events)
    assert "massar: check replication_lag_bytes no longer applies (was OK)" in events
    assert status_changes(after, after, "backup") == []
    [first] = status_changes(None, before, "rabat")
    ok = sum(1 for r in worst_by_name(before.results).values() if r.status is Status.OK)
    assert first == f"massar: first collection: rabat is primary; checks: 1 UNKNOWN (drill_age), {ok} OK"


def test_families_follow_the_declarations_and_pass_promtool(tmp_path):
    samples = (status_samples(snapshot(healthy()), "rabat")
               + [sample("dcctl_collector_runs_total", 3, collector="status", service="massar")])

    class Fixed:
        def samples(self, now):
            return samples

    registry = CollectorRegistry(auto_describe=False)
    registry.register(TaskCollector([Fixed()]))
    text = generate_latest(registry).decode()
    assert "# TYPE dcctl_collector_runs_total counter" in text
    assert 'dcctl_collector_runs_total{collector="status",service="massar"} 3.0' in text
    exposed = [f.name + ("_total" if f.type == "counter" else "") for f in families(samples)]
    assert exposed == [name for name in METRICS if any(s.name == name for s in samples)]
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_families_refuse_an_undeclared_sample():
    from dcctl.agent.metrics import Sample

    with pytest.raises(KeyError, match="not declared"):
        families([Sample("dcctl_nope", {}, 1)])


def test_versions_are_in_build_info_not_in_site_info():
    """A role change must not end the version series (and start a new one): versions live apart."""
    assert "version" not in METRICS["dcctl_site_info"].labels
    assert build_info().labels["version"] == __version__
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TaskCollector([]))
    assert f'dcctl_build_info{{python_version="{platform.python_version()}",version="{__version__}"}} 1.0' \
        in generate_latest(registry).decode()


def test_reconciliation_reasons_are_short_enums_summed_per_reason():
    counts = {"agent start": 1, "inotify queue overflow (events were dropped)": 2,
              "more than 10 paths waiting (filesync.max_pending)": 1, "more than 20 paths waiting (x)": 3}
    assert counts_by_reason(counts) == {"agent_start": 1, "inotify_overflow": 2, "max_pending": 4}
    for reason in counts_by_reason(counts):
        assert re.fullmatch(r"[a-z_]+", reason)
