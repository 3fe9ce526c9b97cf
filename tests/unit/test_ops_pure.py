"""Pure parts of the operation engine: playbooks, preflight refusals, journal reading, reports,
stale primaries."""
from pathlib import Path

import pytest

from dcctl.config.schema import ServiceConfig, SiteConfig
from dcctl.errors import ConfigError
from dcctl.generation_rules import stale_primaries
from dcctl.model import Generation
from dcctl.ops.journal import JournalState
from dcctl.ops.playbook import BUILTIN_STEPS, load_playbook, parse_playbook
from dcctl.ops.preflight import choose_roles, failover_refusals, switchover_refusals
from dcctl.ops.report import build_report
from dcctl.config.schema import LocalTransportConfig, PostgresConfig
from tests.unit.views import primary, site, standby, view

SHIPPED = Path(__file__).parents[2] / "playbooks"


@pytest.mark.parametrize("operation", sorted(BUILTIN_STEPS))
def test_shipped_playbooks_are_valid(operation):
    playbook = load_playbook(operation, SHIPPED)
    assert [s.name for s in playbook.steps if not s.hook] == list(BUILTIN_STEPS[operation])
    assert playbook.hook_points


def test_playbook_mistakes_name_the_entry():
    text = "operation: switchover\nsteps:\n  - preflight\n  - promot\n  - {hook: x, run: y}\n"
    with pytest.raises(ConfigError) as caught:
        parse_playbook("switchover", text, "sw.yaml")
    problems = caught.value.problems
    assert 'sw.yaml: steps[1]: unknown step "promot"; did you mean "promote"?' in problems
    assert any(p.startswith("sw.yaml: steps[2]: expected a built-in step name or {hook: NAME}") for p in problems)


def test_a_playbook_cannot_reorder_the_safe_sequence():
    steps = list(BUILTIN_STEPS["switchover"])
    steps.remove("wait_replayed")
    steps.insert(steps.index("promote") + 1, "wait_replayed")
    text = "operation: switchover\nsteps:\n" + "".join(f"  - {s}\n" for s in steps)
    with pytest.raises(ConfigError, match="in this order.*out of order"):
        parse_playbook("switchover", text, "sw.yaml")


def test_a_playbook_may_add_hook_points():
    steps = list(BUILTIN_STEPS["failover"])
    text = "operation: failover\nsteps:\n" + "".join(f"  - {s}\n" for s in steps) + "  - hook: page_oncall\n"
    assert parse_playbook("failover", text, "f.yaml").hook_points == ["page_oncall"]


SERVICE = ServiceConfig(sites={
    name: SiteConfig(transport=LocalTransportConfig(type="local"), postgres=PostgresConfig(data_dir=f"/pg/{name}"))
    for name in ("rabat", "backup")})


def test_healthy_switchover_has_no_refusal():
    v = view(site("rabat", primary()), site("backup", standby()))
    assert choose_roles(v, None) == ("rabat", "backup")
    assert switchover_refusals(v, SERVICE, "rabat", "backup") == []


def test_switchover_lists_every_reason():
    v = view(site("rabat", primary(lsn="1/0")), site("backup", standby(receiver=None, paused=True,
                                                                        wal_log_hints="off", data_checksums="off"),
                                                     reachable=False))
    reasons = " | ".join(switchover_refusals(v, SERVICE, "rabat", "backup"))
    for fragment in ("site backup is unreachable", "not streaming", "behind", "replay is paused", "pg_rewind"):
        assert fragment in reasons


def test_switchover_from_a_dead_primary_points_to_failover():
    v = view(site("rabat", None, error="refused"), site("backup", standby()))
    assert any("this is a failover" in r for r in switchover_refusals(v, SERVICE, "rabat", "backup"))


def test_failover_needs_a_standby_and_a_way_to_fence():
    v = view(site("rabat", None, error="down", reachable=False), site("backup", standby()))
    reasons = failover_refusals(v, "rabat", "backup", fence_command=None, primary_is_down=False)
    assert len(reasons) == 1 and "--primary-is-down" in reasons[0]
    assert failover_refusals(v, "rabat", "backup", fence_command="ipmitool power off", primary_is_down=False) == []
    assert failover_refusals(v, "rabat", "backup", fence_command=None, primary_is_down=True) == []
    no_standby = view(site("rabat", None, error="down"), site("backup", None, error="down"))
    assert any("nothing to promote" in r for r in failover_refusals(no_standby, "rabat", "backup",
                                                                     fence_command=None, primary_is_down=True))


def test_stale_primary_is_the_one_on_the_older_timeline():
    v = view(site("rabat", primary(timeline=3)), site("backup", primary(timeline=4)))
    assert stale_primaries(v, None) == ["rabat"]
    lone = view(site("rabat", primary(timeline=3)), site("backup", None, error="down"))
    assert stale_primaries(lone, Generation("massar", 4, "backup", ["rabat"])) == ["rabat"]
    assert stale_primaries(lone, Generation("massar", 3, "rabat")) == []


JOURNAL = [
    {"ts": 100.0, "event": "operation", "op": "op1", "kind": "switchover", "service": "massar",
     "old_primary": "rabat", "new_primary": "backup", "host": "h", "pid": 1, "args": {}},
    {"ts": 100.1, "event": "step_start", "step": "stop_primary"},
    {"ts": 100.2, "event": "step_end", "step": "stop_primary", "seconds": 0.1, "observed": {"writes_stopped_at": 100.1}},
    {"ts": 100.2, "event": "step_start", "step": "promote"},
    {"ts": 100.25, "event": "step_end", "step": "promote", "seconds": 0.05,
     "observed": {"standby_replayed_lsn": "0/3000150", "shutdown_checkpoint_lsn": "0/30000D8"}},
    {"ts": 100.3, "event": "step_start", "step": "wait_writable"},
    {"ts": 100.32, "event": "step_end", "step": "wait_writable", "seconds": 0.02, "observed": {"writable_at": 100.32}},
    {"ts": 100.5, "event": "finish", "outcome": "success"},
]


def test_report_from_a_journal():
    report = build_report(JOURNAL)
    assert report["outcome"] == "success" and report["wall_seconds"] == 0.5
    assert report["write_unavailability_seconds"] == pytest.approx(0.22)
    assert report["data_loss"].startswith("none: the standby replayed past the old primary's shutdown checkpoint")
    assert [s["step"] for s in report["steps"]] == ["stop_primary", "promote", "wait_writable"]


def test_journal_state_knows_what_ran():
    state = JournalState.read(JOURNAL[:4])
    assert state.started == ["stop_primary", "promote"] and list(state.ended) == ["stop_primary"]
    assert not state.finished and state.observed == {"writes_stopped_at": 100.1}
    halted = build_report(JOURNAL[:4])
    assert halted["outcome"] == "unfinished"
