"""Pure decisions of the reliability fixes: when resume must refuse (the world changed), how a
fence escalates, what pg_rewind's log says about the directory it was changing."""
import doctest
import importlib
from dataclasses import dataclass

import pytest

from dcctl.ops.resume_check import resume_refusals
from tests.unit.views import primary, site, standby, view


@dataclass(frozen=True)
class Record:
    generation: int
    primary: str
    operation: str | None
    at: float


def header(kind, op="op-1", old="rabat", new="backup", ts=1000.0):
    return {"op": op, "kind": kind, "old_primary": old, "new_primary": new, "ts": ts}


def test_a_switchover_killed_before_promote_may_roll_back_when_nothing_moved():
    stopped = view(site("rabat", None, error="connection refused"), site("backup", standby()))
    assert resume_refusals(header("switchover"), ["preflight", "prepare", "stop_primary"], {"preflight"},
                           {"timeline_before": 1}, stopped, None) == []


def test_rolling_back_over_a_hand_promoted_standby_is_refused():
    promoted = view(site("rabat", None, error="connection refused"), site("backup", primary(timeline=2)))
    reasons = resume_refusals(header("switchover"), ["preflight", "stop_primary"], {"preflight"},
                              {"timeline_before": 1}, promoted, None)
    assert any("second primary" in r for r in reasons)
    assert any("timeline 2" in r for r in reasons)


def test_a_switchover_killed_after_promote_expects_one_more_timeline():
    after = view(site("rabat", None, error="connection refused"), site("backup", primary(timeline=2)))
    started = ["preflight", "stop_primary", "wait_replayed", "promote"]
    assert resume_refusals(header("switchover"), started, set(started[:-1]), {"timeline_before": 1}, after,
                           None) == []


def test_a_full_drill_halted_after_its_own_switchover_back_promoted_is_not_superseded():
    """Found by bench/chaos.py (seed 2, op 24): the drill's second switchover was halted after it
    promoted rabat to timeline 15, before it recorded the generation (still 14, the first one's)."""
    back = view(site("rabat", primary(timeline=15)), site("backup", None, error="connection refused"))
    started = ["preflight", "switchover_there", "verify", "dwell", "switchover_back"]
    recorded = Record(14, "backup", "part-1", 2000.0)
    drill = header("drill", old="rabat", new="backup")
    assert resume_refusals(drill, started, set(started[:-1]), {}, back, recorded, own_parts={"part-1", "part-2"},
                           parts_timeline=15) == []
    refused = resume_refusals(drill, started, set(started[:-1]), {}, back, recorded, own_parts={"part-1", "part-2"})
    assert any("another promotion happened" in r for r in refused)


def test_another_operation_recorded_a_generation_since():
    after = view(site("rabat", standby(timeline=3)), site("backup", primary(timeline=3)))
    reasons = resume_refusals(header("switchover"), ["promote"], set(), {"timeline_before": 2}, after,
                              Record(3, "backup", "op-2", 2000.0))
    assert any("op-2" in r for r in reasons)


def test_a_rejoin_whose_node_was_repaired_by_hand_is_refused():
    repaired = view(site("rabat", standby(timeline=2)), site("backup", primary(timeline=2)))
    started = ["preflight", "prepare", "stop_old_primary", "assess_divergence", "rewind"]
    reasons = resume_refusals(header("rejoin"), started, set(started[:-1]), {"primary_timeline": 2}, repaired,
                              None)
    assert reasons and "by hand" in reasons[0]


def test_a_rejoin_killed_in_its_rewind_may_go_on():
    stopped = view(site("rabat", None, error="connection refused"), site("backup", primary(timeline=2)))
    started = ["preflight", "prepare", "stop_old_primary", "assess_divergence", "rewind"]
    assert resume_refusals(header("rejoin"), started, set(started[:-1]), {"primary_timeline": 2}, stopped,
                           None) == []


def test_a_failover_whose_fenced_primary_came_back_is_refused():
    back = view(site("rabat", primary(timeline=1)), site("backup", standby(timeline=1)))
    reasons = resume_refusals(header("failover"), ["preflight", "fence_old_primary"], {"preflight"},
                              {"timeline_before": 1}, back, None)
    assert reasons and "restarted" in reasons[0]


def test_an_unreachable_site_is_no_evidence():
    lost = view(site("rabat", None, reachable=False), site("backup", standby()))
    assert resume_refusals(header("failover"), ["preflight", "fence_old_primary"], {"preflight"},
                           {"timeline_before": 1}, lost, None) == []


@pytest.mark.parametrize("module", ["dcctl.ops.resume_check", "dcctl.ops.detached", "dcctl.pg.tools",
                                    "dcctl.transport.base", "dcctl.ops.steps.rejoin"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_a_failover_killed_in_promote_may_go_on_though_the_standby_reported_an_old_timeline():
    """Found by the crash-point enumeration: a standby whose primary was killed has no WAL receiver
    and reports its last restartpoint's timeline (27), while the service was on 28 (recorded)."""
    promoted = view(site("rabat", None, error="connection refused"), site("backup", primary(timeline=29)))
    started = ["preflight", "prepare", "record_file_sync", "fence_old_primary", "promote"]
    assert resume_refusals(header("failover"), started, set(started[:-1]), {"timeline_before": 27}, promoted,
                           Record(28, "rabat", "op-0", 500.0)) == []


def test_a_full_drill_resumed_after_its_own_switchover_is_not_superseded_by_it():
    """Found by the crash-point enumeration of the full drill: killed after its first switchover,
    its resume was refused because that switchover, its own part, had recorded a generation."""
    moved = view(site("rabat", standby(timeline=2)), site("backup", primary(timeline=2)))
    own = Record(2, "backup", "op-2-switchover", 1001.0)
    started = ["preflight", "switchover_there", "verify"]
    assert resume_refusals(header("drill"), started, set(started[:-1]), {}, moved, own,
                           own_parts={"op-2-switchover"}) == []
    reasons = resume_refusals(header("drill"), started, set(started[:-1]), {}, moved, own)
    assert any("op-2-switchover recorded generation 2" in r for r in reasons)
