"""Drills on the lab: production untouched, leftovers cleaned, failures named, full drill round trip."""
import json
import os
import re
import subprocess
import sys
import time

import pytest

from dcctl.lab import procs
from dcctl.lab.writer import Writer, missing_ids
from tests.integration.conftest import config_variant, dcctl, local_lab, status_json  # noqa: F401

pytestmark = pytest.mark.lab


def snapshot(lab_):
    report = status_json(str(lab_.spec.config_path))
    return {s["site"]: (s["role"], s["streaming"], s["timeline"]) for s in report["sites"]}


def drill_port(lab_):
    return lab_.spec.base_port + 6


def scratch_root(lab_):
    return lab_.spec.site_dir("backup") / "dcctl-state" / "drill"


def test_non_disruptive_drill_passes_and_leaves_production_as_it_was(local_lab):
    before = snapshot(local_lab)
    result = dcctl("--yes", "-o", "json", "drill", config=str(local_lab.spec.config_path))
    report = json.loads(result.stdout)
    assert report["outcome"] == "success" and report["kind"] == "drill"
    observed = report["observed"]
    assert observed["rto_seconds"] > 0 and observed["rpo_seconds"] is not None
    assert [c["passed"] for c in observed["checks"]] == [True, True]
    assert snapshot(local_lab) == before
    assert procs.port_free(drill_port(local_lab))
    assert not scratch_root(local_lab).exists()
    html = (local_lab.spec.state_dir / "operations" / report["operation"] / "report.html").read_text()
    assert "PASSED" in html and "catalog readable" in html and "<script" not in html
    history = json.loads(dcctl("history", "-o", "json", config=str(local_lab.spec.config_path)).stdout)
    assert history[0]["kind"] == "drill"


def test_a_failing_sql_check_fails_the_drill_and_names_it(local_lab):
    def edit(data):
        data["services"]["massar"]["drill"]["sql_checks"].append(
            {"name": "enrolments present", "query": "SELECT 0", "expect": "at_least", "value": 1000})

    config = config_variant(local_lab, "failing-drill", edit)
    result = dcctl("--yes", "-o", "json", "drill", config=config, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "enrolments present: 0 < 1000" in result.stderr
    report = json.loads(dcctl("history", "-o", "json", config=config).stdout)[0]
    assert report["outcome"] == "failed"
    assert procs.port_free(drill_port(local_lab)) and not scratch_root(local_lab).exists()


def test_an_interrupted_drill_is_cleaned_up_later(local_lab):
    env = dict(os.environ, DCCTL_CONFIG=str(local_lab.spec.config_path), DCCTL_FAULT_AFTER_STEP="start_copy")
    killed = subprocess.run([sys.executable, "-m", "dcctl", "--yes", "drill"], capture_output=True, text=True,
                            env=env, timeout=300)
    assert killed.returncode == 99
    assert not procs.port_free(drill_port(local_lab))  # the copy is still running
    cleaned = dcctl("drill", "--cleanup", config=str(local_lab.spec.config_path))
    assert "removed 1 leftover drill copy" in cleaned.stdout
    assert procs.port_free(drill_port(local_lab))
    assert not any(scratch_root(local_lab).glob("*")) if scratch_root(local_lab).exists() else True


def test_a_later_drill_removes_what_a_killed_one_left(local_lab):
    env = dict(os.environ, DCCTL_CONFIG=str(local_lab.spec.config_path), DCCTL_FAULT_AFTER_STEP="copy_standby")
    killed = subprocess.run([sys.executable, "-m", "dcctl", "--yes", "drill"], capture_output=True, text=True,
                            env=env, timeout=300)
    assert killed.returncode == 99
    leftover = re.search(r"drill (\S+-drill-\w+):", killed.stderr).group(1)
    report = json.loads(dcctl("--yes", "-o", "json", "drill", config=str(local_lab.spec.config_path)).stdout)
    assert report["outcome"] == "success"
    assert [path.rsplit("/", 1)[1] for path in report["observed"]["leftovers_removed"]] == [leftover]
    assert not scratch_root(local_lab).exists()


def test_full_drill_switches_there_and_back_without_losing_a_commit(local_lab):
    before = {site: role for site, (role, _, _) in snapshot(local_lab).items()}
    with Writer(local_lab.spec.app_dsn(), rate=200) as writer:
        writer.wait_for_commits(20)
        result = dcctl("--yes", "-o", "json", "drill", "--mode", "full", config=str(local_lab.spec.config_path))
        writer.wait_for_commits(20)
    report = json.loads(result.stdout)
    assert report["outcome"] == "success"
    # One composite operation on the engine: its steps come from playbooks/drill_full.yaml.
    assert [s["step"] for s in report["steps"] if not s["step"].startswith("hook:")] == [
        "preflight", "switchover_there", "verify", "dwell", "switchover_back", "verdict"]
    assert all(s["outcome"] == "ok" for s in report["steps"])
    assert report["observed"]["switchover_there_operation"] != report["observed"]["switchover_back_operation"]
    assert report["observed"]["checks"][0]["passed"]
    assert {site: role for site, (role, _, _) in snapshot(local_lab).items()} == before
    assert missing_ids(local_lab.spec.app_dsn(), writer.stats.acknowledged) == []


def test_a_full_drill_of_an_idle_service_is_not_refused(local_lab):
    """An idle primary sends its standby nothing for up to wal_sender_timeout / 2: the full drill's
    preflight refused it as a silent receiver, although its switchovers nudge the stream first."""
    def edit(data):
        data["services"]["massar"]["operation"] = {"max_receipt_age": 1.0}

    config = config_variant(local_lab, "idle-full-drill", edit)
    time.sleep(1.5)  # idle for longer than max_receipt_age
    report = json.loads(dcctl("--yes", "-o", "json", "drill", "--mode", "full", config=config).stdout)
    assert report["outcome"] == "success"
