"""Switchover on the lab: zero acknowledged commits lost, roles swapped, both directions stream;
dry run, lock, hooks and crashes at step boundaries."""
import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dcctl.lab.writer import Writer, missing_ids
from tests.integration.conftest import config_variant, dcctl, local_lab, ssh_lab, status_json, wait_for  # noqa: F401

pytestmark = pytest.mark.lab


def roles(lab_, config=None):
    report = status_json(config or str(lab_.spec.config_path))
    return {s["site"]: (s["role"], s["streaming"]) for s in report["sites"]}


def primary_of(lab_) -> str:
    return next(site for site, (role, _) in roles(lab_).items() if role == "primary")


def switchover_json(lab_, *extra, config=None, check=True, env=None):
    result = dcctl("--yes", "-o", "json", "switchover", *extra, config=config or str(lab_.spec.config_path),
                   check=check)
    return result


def assert_streaming_pair(lab_, primary):
    standby = "backup" if primary == "rabat" else "rabat"
    wait_for(lambda: roles(lab_) == {primary: ("primary", None), standby: ("standby", True)},
             what=f"{primary} primary and {standby} streaming")


@pytest.mark.parametrize("lab_name", ["local_lab", "ssh_lab"])
def test_round_trip_with_a_writer_loses_no_commit(lab_name, request):
    lab = request.getfixturevalue(lab_name)
    start = primary_of(lab)
    other = "backup" if start == "rabat" else "rabat"
    with Writer(lab.spec.app_dsn(), rate=200) as writer:
        writer.wait_for_commits(20)
        there = json.loads(switchover_json(lab).stdout)
        assert there["outcome"] == "success" and there["new_primary"] == other
        writer.wait_for_commits(20)
        assert_streaming_pair(lab, other)
        back = json.loads(switchover_json(lab).stdout)
        assert back["outcome"] == "success" and back["new_primary"] == start
        writer.wait_for_commits(20)
    assert_streaming_pair(lab, start)
    assert missing_ids(lab.spec.app_dsn(), writer.stats.acknowledged) == []
    for report in (there, back):
        assert report["data_loss"].startswith("none")
        assert report["write_unavailability_seconds"] > 0
        assert [s["step"] for s in report["steps"] if s["outcome"] != "ok"] == []


def test_dry_run_changes_nothing(local_lab):
    before = roles(local_lab)
    operations = local_lab.spec.state_dir / "operations"
    count = len(list(operations.iterdir())) if operations.exists() else 0
    result = dcctl("switchover", "--dry-run", config=str(local_lab.spec.config_path))
    assert "point of no return" in result.stdout and "pg_controldata" in result.stdout
    assert roles(local_lab) == before
    assert (len(list(operations.iterdir())) if operations.exists() else 0) == count


def hooks_config(lab_, name, hooks):
    def edit(data):
        data["services"]["massar"]["hooks"] = hooks
    return config_variant(lab_, name, edit)


def test_a_failing_abort_hook_before_promotion_rolls_back(local_lab):
    start = primary_of(local_lab)
    config = hooks_config(local_lab, "failing-hook", {
        "after_promote": [{"site": "new_primary", "run": "true"}],
        "before_switch": [{"site": "old_primary", "run": "echo draining; exit 7", "on_failure": "abort"}]})
    result = switchover_json(local_lab, config=config, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "hook before_switch" in result.stderr and "rc 7" in result.stderr
    assert_streaming_pair(local_lab, start)
    history = json.loads(dcctl("history", "-o", "json", config=config).stdout)
    assert history[0]["outcome"] == "rolled_back"


def test_a_failure_after_the_primary_stopped_restarts_it_as_primary(local_lab):
    # A site playbook with an extra hook point right after stop_primary; its hook fails.
    start = primary_of(local_lab)
    playbooks = local_lab.spec.root / "site-playbooks"
    playbooks.mkdir(exist_ok=True)
    shipped = (Path(__file__).parents[2] / "playbooks" / "switchover.yaml").read_text()
    (playbooks / "switchover.yaml").write_text(shipped.replace(
        "  - read_shutdown_checkpoint", "  - hook: after_stop\n  - read_shutdown_checkpoint"))

    def edit(data):
        data["playbooks_dir"] = str(playbooks)
        data["services"]["massar"]["hooks"] = {"after_stop": [{"site": "new_primary", "run": "exit 3"}]}

    config = config_variant(local_lab, "after-stop-hook", edit)
    plan = dcctl("switchover", "--dry-run", config=config).stdout
    assert "hook:after_stop" in plan
    result = switchover_json(local_lab, config=config, check=False)
    assert result.returncode == 1 and "hook after_stop" in result.stderr
    assert "undo stop_primary" in result.stderr
    assert_streaming_pair(local_lab, start)


def test_a_second_operation_is_refused_while_one_runs(local_lab):
    config = hooks_config(local_lab, "slow-hook", {"before_switch": [{"site": "old_primary", "run": "sleep 3"}]})
    env = dict(os.environ, DCCTL_CONFIG=config)
    first = subprocess.Popen([sys.executable, "-m", "dcctl", "--yes", "switchover"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = local_lab.spec.state_dir / "locks" / "massar.lock"
        wait_for(lock.exists, what="the first operation's lock")
        second = dcctl("--yes", "switchover", config=config, check=False)
        assert second.returncode == 5
        assert "is locked by operation" in second.stderr and f"pid {first.pid}" in second.stderr
    finally:
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    dcctl("--yes", "switchover", config=config)  # and back


@pytest.mark.parametrize("crash_after, expected", [
    ("stop_primary", "rolled_back"),
    ("read_shutdown_checkpoint", "rolled_back"),
    ("wait_replayed", "rolled_back"),
    ("promote", "success"),
    ("configure_old_primary_as_standby", "success"),
    ("start_old_primary", "success"),
])
def test_resume_after_a_crash_at_a_step_boundary(local_lab, crash_after, expected):
    start = primary_of(local_lab)
    other = "backup" if start == "rabat" else "rabat"
    env = dict(os.environ, DCCTL_CONFIG=str(local_lab.spec.config_path), DCCTL_FAULT_AFTER_STEP=crash_after)
    crashed = subprocess.run([sys.executable, "-m", "dcctl", "--yes", "switchover"], capture_output=True, text=True,
                             env=env, timeout=120)
    assert crashed.returncode == 99, crashed.stderr
    op_id = re.search(r"switchover (\S+-switchover-\w+):", crashed.stderr).group(1)

    refused = dcctl("--yes", "switchover", config=str(local_lab.spec.config_path), check=False)
    assert refused.returncode == 5 and "STALE" in refused.stderr and op_id in refused.stderr

    resumed = dcctl("-o", "json", "resume", op_id, config=str(local_lab.spec.config_path), check=False)
    report = json.loads(resumed.stdout)
    assert report["outcome"] == expected, resumed.stderr
    assert_streaming_pair(local_lab, other if expected == "success" else start)
    assert not (local_lab.spec.state_dir / "locks" / "massar.lock").exists()


def test_connections_kept_from_planning_are_replaced_when_the_servers_restarted(local_lab):
    """The operation goes on with the connections its planning snapshot opened; a server
    restarted between the plan and the run has ended them, and the operation connects again."""
    from dcctl.config import load_config
    from dcctl.ops import operation

    start = primary_of(local_lab)
    standby = "backup" if start == "rabat" else "rabat"
    config = load_config(str(local_lab.spec.config_path))
    planned = operation.plan(config, "switchover", None, to_site=standby)
    kept = dict(planned.ctx._conns)
    assert set(kept) == {start, standby}
    for site in (standby, start):
        local_lab.stop(site)
        local_lab.start(site)
    local_lab.wait_streaming(standby)
    for site in (standby, start):
        fresh = planned.ctx.conn(site)
        assert fresh is not kept[site] and kept[site].closed
        assert fresh.execute("SELECT 1 AS one").fetchone()["one"] == 1
    with Writer(local_lab.spec.app_dsn(), rate=200) as writer:
        writer.wait_for_commits(20)
        planned.ctx.view_taken = 0.0  # the restart took longer than a snapshot stays fresh
        outcome = operation.run(planned)
        writer.wait_for_commits(20)
    assert outcome.outcome == "success", outcome.report
    assert_streaming_pair(local_lab, standby)
    assert missing_ids(local_lab.spec.app_dsn(), writer.stats.acknowledged) == []
