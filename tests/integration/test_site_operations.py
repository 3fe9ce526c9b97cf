"""Site operations on the three-service lab (recovery plan [[identity], [massar, portal]]): a
whole site switched over and back with a writer on every service and no commit lost; a dry run
that changes nothing and names every service's refusals; a hook failing in group 2 that leaves
group 1 moved; dcctl killed mid-way and `dcctl resume SITEOP`; a site failover after the primary
site's postmasters are killed, then a site rejoin."""
import json
import os
import signal
from contextlib import ExitStack

import pytest

from dcctl.lab import procs
from dcctl.lab.writer import Writer, missing_ids
from tests.integration.conftest import config_variant, dcctl, wait_for
from tests.integration.test_crash_points import steps

pytestmark = pytest.mark.lab

SERVICES = ("massar", "identity", "portal")


def other(site: str) -> str:
    return "backup" if site == "rabat" else "rabat"


def where(config: str) -> dict[str, tuple[str | None, bool]]:
    """Each service: (its primary site, whether its standby streams)."""
    services = json.loads(dcctl("status", "-o", "json", config=config, check=False).stdout)["services"]
    return {s["service"]: (s["primary"], any(site.get("streaming") for site in s["sites"])) for s in services}


def all_at(config: str, site: str) -> bool:
    return where(config) == {name: (site, True) for name in SERVICES}


def the_primary_site(config: str) -> str:
    primaries = {primary for primary, _ in where(config).values()}
    assert len(primaries) == 1, primaries
    return primaries.pop()


def site_op(config: str, *args: str, check: bool = True, env: dict | None = None):
    return dcctl("--yes", "-o", "json", "site", *args, config=config, check=check, timeout=300) if env is None else \
        _with_env(env, "--yes", "-o", "json", "site", *args, config=config)


def _with_env(env: dict, *args: str, config: str):
    import subprocess
    import sys

    full = {**os.environ, "DCCTL_CONFIG": config, **env}
    return subprocess.run([sys.executable, "-m", "dcctl", *args], capture_output=True, text=True, env=full,
                          timeout=300)


def site_operations(lab_) -> list[str]:
    base = lab_.spec.state_dir / "operations"
    return sorted(p.name for p in base.iterdir() if p.name.startswith("site-")) if base.exists() else []


def writers(stack: ExitStack, lab_) -> dict[str, Writer]:
    started = {name: stack.enter_context(Writer(lab_.spec.app_dsn(name), rate=100)) for name in SERVICES}
    for writer in started.values():
        writer.wait_for_commits(10)
    return started


def assert_nothing_lost(lab_, started: dict[str, Writer]) -> None:
    for name, writer in started.items():
        writer.stop()
        assert missing_ids(lab_.spec.app_dsn(name), writer.stats.acknowledged) == [], name


def test_a_dry_run_changes_nothing_and_lists_the_refusals_of_every_service(multi_lab):
    config = str(multi_lab.spec.config_path)
    start = the_primary_site(config)
    standby = other(start)
    before, operations = where(config), site_operations(multi_lab)
    for name in ("identity", "portal"):  # one service of each group
        multi_lab.stop(standby, service=name)
    try:
        result = dcctl("site", "switchover", "--to", standby, "--dry-run", config=config, check=False)
        assert result.returncode == 5, result.stderr
        assert "group 1/2" in result.stdout and "group 2/2" in result.stdout and "point of no return" in result.stdout
        refusals = result.stdout.split("refused, for these reasons (all of them):")[1]
        assert f"identity: site {standby} is not a running standby" in refusals
        assert f"portal: site {standby} is not a running standby" in refusals
        assert "massar" not in refusals
        as_json = json.loads(dcctl("site", "switchover", "--to", standby, "--dry-run", "-o", "json", config=config,
                                   check=False).stdout)
        assert {r.split(":")[0] for r in as_json["refusals"]} == {"identity", "portal"}
        assert as_json["services"]["massar"]["steps"][0]["step"] == "preflight"
    finally:
        for name in ("identity", "portal"):
            multi_lab.start(standby, service=name)
            multi_lab.wait_streaming(standby, service=name)
    assert where(config) == before
    assert site_operations(multi_lab) == operations


def test_a_site_switchover_there_and_back_loses_no_commit_on_any_service(multi_lab):
    config = str(multi_lab.spec.config_path)
    start = the_primary_site(config)
    with ExitStack() as stack:
        started = writers(stack, multi_lab)
        there = json.loads(site_op(config, "switchover", "--to", other(start)).stdout)
        assert there["outcome"] == "success", there
        assert {s["service"]: (s["group"], s["outcome"], s["primary_now"]) for s in there["services"]} == {
            "identity": (1, "success", other(start)), "massar": (2, "success", other(start)),
            "portal": (2, "success", other(start))}
        wait_for(lambda: all_at(config, other(start)), what="every service primary at the target, streaming")
        for writer in started.values():
            writer.wait_for_commits(10)
        back = json.loads(site_op(config, "switchover", "--to", start).stdout)
        assert back["outcome"] == "success"
        for writer in started.values():
            writer.wait_for_commits(10)
        assert_nothing_lost(multi_lab, started)
    wait_for(lambda: all_at(config, start), what="every service back, streaming")
    for report in (there, back):
        assert report["site_rto_seconds"] > 0 and report["data_loss"] == "none on every service"
        assert [g["outcome"] for g in report["groups"]] == ["success", "success"]
        assert all(s["write_unavailability_seconds"] > 0 for s in report["services"])
        assert all(s["file_store"] for s in report["services"])
    history = {entry["operation"]: entry for entry in json.loads(dcctl("history", "-o", "json", config=config).stdout)}
    assert history[back["operation"]]["kind"] == "site-switchover"
    assert history[back["operation"]]["description"] == f"site switchover to {start}: 3 service(s), 2 group(s)"
    portal = next(s["operation"] for s in back["services"] if s["service"] == "portal")
    assert history[portal]["description"].endswith(f"(part of {back['operation']})")
    assert (multi_lab.spec.state_dir / "operations" / back["operation"] / "report.md").is_file()


def test_a_hook_failing_in_group_2_leaves_group_1_moved_and_the_rest_rolled_back(multi_lab):
    config = str(multi_lab.spec.config_path)
    start = the_primary_site(config)
    target = other(start)

    def failing_hooks(data):
        for name in ("massar", "portal"):
            data["services"][name]["hooks"] = {"before_switch": [{"site": "old_primary", "run": "false"}]}
    failing = config_variant(multi_lab, "site-group2-hook", failing_hooks)
    result = site_op(failing, "switchover", "--to", target, check=False)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "stopped"
    assert {s["service"]: (s["outcome"], s["primary_now"]) for s in report["services"]} == {
        "identity": ("success", target), "massar": ("rolled_back", f"{start} (unchanged)"),
        "portal": ("rolled_back", f"{start} (unchanged)")}
    assert [g["outcome"] for g in report["groups"]] == ["success", "stopped"]
    assert where(config)["identity"][0] == target and where(config)["portal"][0] == start
    split = dcctl("check", "--check", "site_split", config=config, check=False)
    assert split.returncode == 2 and "identity" in split.stdout
    # Run again once the cause is gone: identity is already there and skipped, the others move.
    again = json.loads(site_op(config, "switchover", "--to", target).stdout)
    assert {s["service"]: s["outcome"] for s in again["services"]} == {
        "identity": "skipped", "massar": "success", "portal": "success"}
    wait_for(lambda: all_at(config, target), what="every service at the target")


def test_ctrl_c_rolls_back_the_services_moving_and_starts_no_further_group(multi_lab):
    """The first Ctrl-C reaches the services running in threads: identity (group 1) finishes
    the step it is in, then rolls back; group 2 never starts; exit 130."""
    config = str(multi_lab.spec.config_path)
    start = the_primary_site(config)
    result = site_op(config, "switchover", "--to", other(start), env={"DCCTL_FAULT_AT": "prepare:start:sigint"})
    assert result.returncode == 130, result.stderr
    assert "[identity] rolling back: interrupted by Ctrl-C after step prepare" in result.stderr
    op_id = site_operations(multi_lab)[-1]
    report = json.loads((multi_lab.spec.state_dir / "operations" / op_id / "report.json").read_text())
    assert report["outcome"] == "stopped"
    assert [(s["service"], s["outcome"]) for s in report["services"]] == [("identity", "rolled_back")]
    assert [g["outcome"] for g in report["groups"]] == ["stopped", "not started"]
    wait_for(lambda: all_at(config, start), what="every service still at its primary site, streaming")


# Every step of the switchover playbook, enumerated, in group 2 (massar and portal at once: the
# kill finds the other one wherever it is); and in group 1 on each side of the point of no return.
SITE_CRASH_POINTS = [(f"{step}:start", 2) for step in steps("switchover")] \
    + [("promote:start", 1), ("stop_primary:end", 1)]


@pytest.mark.parametrize("moment,group", SITE_CRASH_POINTS)
def test_dcctl_killed_during_a_site_switchover_is_finished_by_resume(multi_lab, moment, group):
    """Killed in group 1 past identity's point of no return (resume drives it forward), or before
    it (resume rolls it back and runs it again); or in group 2 at any step of the one moving first.
    Resume ends with every service moved, streaming, and no commit lost."""
    config = str(multi_lab.spec.config_path)
    start = the_primary_site(config)
    target = other(start)
    if group == 2:  # identity already there: the first service to reach the moment is in group 2
        dcctl("--yes", "switchover", "-s", "identity", "--to", target, config=config)
    with ExitStack() as stack:
        started = writers(stack, multi_lab)
        killed = site_op(config, "switchover", "--to", target, env={"DCCTL_FAULT_AT": f"{moment}:kill"})
        assert killed.returncode == 99, killed.stderr
        op_id = site_operations(multi_lab)[-1]
        resumed = dcctl("--yes", "-o", "json", "resume", op_id, config=config, timeout=300)
        report = json.loads(resumed.stdout)
        assert report["operation"] == op_id and report["outcome"] == "success", report
        wait_for(lambda: all_at(config, target), what="every service at the target, streaming")
        for writer in started.values():
            writer.wait_for_commits(10)
        assert_nothing_lost(multi_lab, started)
    again = dcctl("resume", op_id, config=config)
    assert "nothing to resume" in again.stdout


def kill_postmasters(lab_, site: str) -> None:
    for name in SERVICES:
        pid = lab_.running(site, service=name)
        assert pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda pid=pid: not procs.alive(pid), what=f"{name}'s postmaster at {site} to be gone")


def test_a_site_failover_after_the_primary_site_died_then_a_site_rejoin(multi_lab):
    config = str(multi_lab.spec.config_path)
    old = the_primary_site(config)
    new = other(old)
    kill_postmasters(multi_lab, old)
    failover = json.loads(site_op(config, "failover", "--to", new).stdout)
    assert failover["outcome"] == "success", failover
    assert {s["service"]: s["primary_now"] for s in failover["services"]} == {name: new for name in SERVICES}
    assert all(s["data_loss"].startswith("possible") for s in failover["services"])
    rejoin = json.loads(site_op(config, "rejoin", "--site", old).stdout)
    assert rejoin["outcome"] == "success", rejoin
    wait_for(lambda: all_at(config, new), timeout=60, what=f"every service primary at {new}, {old} streaming")
