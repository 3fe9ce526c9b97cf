"""Drill metrics from drill records (files only, no server)."""
from dcctl.agent.drills import drill_samples, latest_drills
from dcctl.ops.journal import Journal


def record(state_dir, op, outcome, ts, rto=0.2):
    journal = Journal.create(state_dir, op, {"kind": "drill", "service": "massar", "old_primary": "rabat",
                                             "new_primary": "backup", "args": {}})
    journal.append("step_start", step="promote_copy")
    journal.append("step_end", step="promote_copy", seconds=0.1, observed={"rto_seconds": rto, "rpo_seconds": 0.0})
    entry = journal.append("finish", outcome=outcome)
    return entry["ts"]


def test_last_drill_and_last_success(tmp_path):
    assert drill_samples(latest_drills(str(tmp_path), "massar"), "massar") == []
    ok_at = record(tmp_path, "20261124T010000Z-drill-aaaaaa", "success", 1)
    record(tmp_path, "20261124T020000Z-drill-bbbbbb", "rolled_back", 2, rto=0.5)
    Journal.create(tmp_path, "20261124T030000Z-drill-cccccc", {"kind": "drill", "service": "massar"})  # running
    samples = {s.name: s.value for s in drill_samples(latest_drills(str(tmp_path), "massar"), "massar")}
    assert samples["dcctl_drill_last_succeeded"] == 0.0  # the newest finished one failed
    assert samples["dcctl_drill_last_success_timestamp_seconds"] == ok_at
    assert samples["dcctl_drill_last_rto_seconds"] == 0.5
    assert latest_drills(str(tmp_path), "other").last is None
