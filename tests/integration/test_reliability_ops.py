"""Faults found by an independent run (reliability issue, items 1, 2, 5 and 7), each reproduced
on the lab: a rejoin killed while pg_rewind runs, a rewind cut off half-way, resuming an old
operation after a hand repair, a frozen primary in a failover, and Ctrl-C."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dcctl.lab import procs
from dcctl.lab.writer import Writer, missing_ids
from tests.integration.conftest import (app_connect, config_variant, dcctl, local_lab, ssh_lab,  # noqa: F401
                                        status_json, wait_for)

pytestmark = pytest.mark.lab


def roles(lab_) -> dict[str, tuple[str, bool | None]]:
    """Each site's role and whether it streams, as `dcctl status` reports them (gathered in this
    process: the crash-point tests ask hundreds of times, and a CLI start costs half a second)."""
    from dcctl.config import load_config
    from dcctl.status_report import service_status
    from dcctl.topology import gather_view

    config = load_config(lab_.spec.config_path)
    name, service = next(iter(config.services.items()))
    report = service_status(gather_view(config, name, service))
    return {s["site"]: (s["role"], s["streaming"]) for s in report["sites"]}


def primary_of(lab_) -> str:
    return next(site for site, (role, _) in roles(lab_).items() if role == "primary")


def other(site: str) -> str:
    return "backup" if site == "rabat" else "rabat"


def assert_streaming_pair(lab_, primary):
    wait_for(lambda: roles(lab_) == {primary: ("primary", None), other(primary): ("standby", True)}, timeout=60,
             what=f"{primary} primary and {other(primary)} streaming")


def postgres_pids(lab_, site) -> list[int]:
    """The postmaster of a site and its children, read from /proc (never by name)."""
    postmaster = lab_.running(site)
    assert postmaster
    children = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(line for line in status.read_text().splitlines() if line.startswith("PPid:"))
        except (OSError, StopIteration):
            continue
        if int(ppid.split()[1]) == postmaster:
            children.append(int(status.parent.name))
    return [postmaster, *children]


def signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def diverged_old_primary(lab_) -> tuple[str, str]:
    """Fail over from a killed primary, then let the old primary take 5 commits of its own by hand:
    it has diverged and must be rejoined. Returns (old, new)."""
    config = str(lab_.spec.config_path)
    old = primary_of(lab_)
    new = other(old)
    postmaster = lab_.running(old)
    os.kill(postmaster, signal.SIGKILL)
    wait_for(lambda: not procs.alive(postmaster), what="the killed postmaster to be gone")
    report = json.loads(dcctl("--yes", "-o", "json", "failover", config=config).stdout)
    assert report["outcome"] == "success"
    (lab_.spec.pgdata(old) / "standby.signal").unlink()
    wait_for(lambda: not Path(f"/proc/{postmaster}").exists(), what="the old postmaster to be reaped")
    lab_.start(old)
    with app_connect(lab_, old) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS lost_here (id int)")
        for i in range(5):
            conn.execute("INSERT INTO lost_here VALUES (%s)", (i,))
    lab_.stop(old, "fast")
    with app_connect(lab_, new) as conn:
        # Enough new data and WAL on the new primary that pg_rewind copies for a while: a kill can
        # then land in the middle of its copy, as it did in the independent run.
        conn.execute("CREATE TABLE IF NOT EXISTS bulk AS SELECT g AS id, repeat('x', 2000) AS pad "
                     "FROM generate_series(1, 60000) g")
    return old, new


def history(config: str) -> list[dict]:
    return json.loads(dcctl("history", "-o", "json", config=config).stdout)


def newest_operation(lab_, kind: str) -> str:
    def started(directory: Path) -> float:
        with open(directory / "journal.jsonl") as journal:
            return json.loads(journal.readline())["ts"]
    operations = [p for p in (lab_.spec.state_dir / "operations").iterdir() if f"-{kind}-" in p.name]
    return max(operations, key=started).name


def pg_rewind_pid(data_dir: Path) -> int | None:
    """The pg_rewind working on data_dir, found through /proc (never by name alone)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"/pg_rewind") and str(data_dir).encode() in args:
            return int(cmdline.parent.name)
    return None


def kill_dcctl_during_rewind(lab_, site: str, config: str, sig=signal.SIGKILL) -> str:
    """Start `dcctl rejoin`, and send it `sig` as soon as its pg_rewind runs (SIGINT: Ctrl-C).
    Returns the operation."""
    known = operation_ids(lab_)
    proc = subprocess.Popen([sys.executable, "-m", "dcctl", "--yes", "rejoin", "--site", site],
                            env=dict(os.environ, DCCTL_CONFIG=config), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: pg_rewind_pid(lab_.spec.pgdata(site)), timeout=120, interval=0.005,
                 what="pg_rewind to start")
        time.sleep(0.3)  # into its copy
    finally:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    (op,) = operation_ids(lab_) - known
    return op


def control_data(lab_, site):
    from dcctl.pg.controldata import parse_controldata

    out = subprocess.run(["/usr/lib/postgresql/15/bin/pg_controldata", "-D", str(lab_.spec.pgdata(site))],
                         capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"), check=True).stdout
    return parse_controldata(out)


def cut_off_rewind(data_dir: Path) -> None:
    """What a host reboot does to a running pg_rewind: it dies mid-copy with everything around it,
    leaving what the independent run saw (zero-length WAL files)."""
    pid = pg_rewind_pid(data_dir)
    if pid:
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: pg_rewind_pid(data_dir) is None, timeout=30, what="pg_rewind to be gone")
    for segment in sorted((data_dir / "pg_wal").glob("0000000[0-9]*"))[-2:]:
        segment.write_bytes(b"")


# ---- item 1: a rejoin killed or cut off while pg_rewind runs ------------------------------------

@pytest.mark.parametrize("lab_name, sig", [("local_lab", signal.SIGINT), ("local_lab", signal.SIGKILL),
                                           ("ssh_lab", signal.SIGKILL)], ids=["local-ctrl-c", "local-kill", "ssh-kill"])
def test_a_rejoin_killed_while_pg_rewind_runs_is_finished_by_resume(lab_name, sig, request):
    lab = request.getfixturevalue(lab_name)
    config = str(lab.spec.config_path)
    old, new = diverged_old_primary(lab)
    with Writer(lab.spec.app_dsn(), rate=200) as writer:
        writer.wait_for_commits(20)
        op = kill_dcctl_during_rewind(lab, old, config, sig)
        # pg_rewind outlived dcctl and finished: the control file it writes last names the new timeline.
        wait_for(lambda: pg_rewind_pid(lab.spec.pgdata(old)) is None, timeout=120, what="pg_rewind to end")
        assert control_data(lab, old).min_recovery_timeline == status_json(config)["sites"][
            0 if new == "rabat" else 1]["timeline"]
        resumed = dcctl("--yes", "-o", "json", "resume", op, config=config, timeout=300, check=False)
        assert resumed.returncode == 0, resumed.stderr
        report = json.loads(resumed.stdout)
        assert report["outcome"] == "success"
        assert report["observed"]["rewind"] == "pg_rewind"  # the detached pg_rewind was not cut off
        assert report["observed"]["diverged_commits"] == 6  # CREATE TABLE and 5 inserts
        writer.wait_for_commits(20)
    assert_streaming_pair(lab, new)
    assert missing_ids(lab.spec.app_dsn(), writer.stats.acknowledged) == []
    dcctl("--yes", "switchover", config=config)  # the lab back as it was
    assert_streaming_pair(lab, old)


def wrecked_rejoin(lab_) -> tuple[str, str, str]:
    """A rejoin whose dcctl was killed and whose pg_rewind was then cut off mid-copy:
    (old primary, new primary, the operation)."""
    old, new = diverged_old_primary(lab_)
    op = kill_dcctl_during_rewind(lab_, old, str(lab_.spec.config_path))
    cut_off_rewind(lab_.spec.pgdata(old))
    return old, new, op


def test_a_rewind_cut_off_half_way_is_recloned_by_resume(local_lab):
    lab = local_lab
    config = str(lab.spec.config_path)
    old, new, op = wrecked_rejoin(lab)
    resumed = dcctl("--yes", "-o", "json", "resume", op, config=config, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["outcome"] == "success"
    assert report["observed"]["rewind"].startswith("re-cloned (pg_rewind")
    kept = report["observed"]["old_data_kept_at"]
    assert kept and Path(kept).is_dir()  # the wrecked directory is kept aside, never deleted
    assert report["observed"]["diverged_commits"] == 6  # counted before the rewind started
    assert_streaming_pair(lab, new)
    dcctl("--yes", "switchover", config=config)
    assert_streaming_pair(lab, old)


def test_allow_reclone_repairs_a_half_rewound_directory_and_the_old_rejoin_is_superseded(local_lab):
    lab = local_lab
    config = str(lab.spec.config_path)
    old, new, first = wrecked_rejoin(lab)

    # The operator does not resume; a new rejoin meets the wrecked directory.
    refused = dcctl("--yes", "rejoin", "--site", old, "--break-lock", config=config, check=False)
    assert refused.returncode == 5, refused.stderr
    assert "half-rewound" in refused.stderr and "--allow-reclone" in refused.stderr
    assert "Traceback" not in refused.stderr
    repaired = dcctl("--yes", "-o", "json", "rejoin", "--site", old, "--allow-reclone", "--break-lock",
                     config=config, timeout=300, check=False)
    assert repaired.returncode == 0, repaired.stderr
    assert json.loads(repaired.stdout)["observed"]["rewind"] == "re-cloned"
    assert_streaming_pair(lab, new)

    # Resuming the old, halted rejoin now would remove standby.signal from a running standby.
    superseded = dcctl("--yes", "resume", first, config=config, check=False)
    assert superseded.returncode == 5, superseded.stderr
    assert "superseded" in superseded.stderr and "by hand" in superseded.stderr
    assert (lab.spec.pgdata(old) / "standby.signal").exists()
    assert_streaming_pair(lab, new)
    assert next(h for h in history(config) if h["operation"] == first)["outcome"] == "superseded"
    dcctl("--yes", "switchover", config=config)
    assert_streaming_pair(lab, old)


# ---- item 2: resume after the world changed ------------------------------------------------

def test_resuming_a_rolled_back_world_after_a_hand_promotion_is_refused(local_lab):
    """A switchover killed after stop_primary would roll back by restarting the old primary; if
    someone promoted the standby by hand meanwhile, that restart would make two primaries."""
    lab = local_lab
    config = str(lab.spec.config_path)
    start = primary_of(lab)
    env = dict(os.environ, DCCTL_CONFIG=config, DCCTL_FAULT_AFTER_STEP="stop_primary")
    killed = subprocess.run([sys.executable, "-m", "dcctl", "--yes", "switchover"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert killed.returncode == 99
    op = newest_operation(lab, "switchover")
    with app_connect(lab, other(start)) as conn:
        conn.execute("SELECT pg_promote(true)")
    refused = dcctl("--yes", "resume", op, config=config, check=False)
    assert refused.returncode == 5 and "superseded" in refused.stderr, refused.stderr
    assert "second primary" in refused.stderr
    assert lab.running(start) is None  # the old primary was not restarted
    # Repair the lab: the old primary rejoins the hand-promoted one, then everything moves back.
    dcctl("--yes", "rejoin", "--site", start, "--break-lock", config=config, timeout=300)
    assert_streaming_pair(lab, other(start))
    dcctl("--yes", "switchover", config=config)
    assert_streaming_pair(lab, start)


def test_a_standby_that_ran_as_a_primary_on_the_same_timeline_is_recloned_not_rewound(local_lab):
    """standby.signal removed from a standby, which restarts as a second primary on the SAME
    timeline: no fork is recorded, so pg_rewind would change nothing and replay would then fail."""
    lab = local_lab
    config = str(lab.spec.config_path)
    start = primary_of(lab)
    standby = other(start)
    lab.stop(standby, "fast")
    (lab.spec.pgdata(standby) / "standby.signal").unlink()
    lab.start(standby)
    with app_connect(lab, standby) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        conn.execute("CREATE TABLE IF NOT EXISTS second_primary (id int)")
        conn.execute("INSERT INTO second_primary VALUES (1)")
    lab.stop(standby, "fast")
    refused = dcctl("--yes", "rejoin", "--site", standby, config=config, check=False)
    assert refused.returncode == 5, refused.stderr
    assert "ran as a primary on timeline" in refused.stderr and "--allow-reclone" in refused.stderr
    repaired = dcctl("--yes", "-o", "json", "rejoin", "--site", standby, "--allow-reclone", config=config,
                     timeout=300, check=False)
    assert repaired.returncode == 0, repaired.stderr
    assert json.loads(repaired.stdout)["observed"]["rewind"] == "re-cloned"
    assert_streaming_pair(lab, start)


# ---- item 5: a hung but reachable primary --------------------------------------------------

def test_failover_fences_a_frozen_primary_within_the_fence_deadline(local_lab):
    lab = local_lab
    old = primary_of(lab)
    config = str(lab.spec.config_path)
    frozen = postgres_pids(lab, old)
    signal_all(frozen, signal.SIGSTOP)
    try:
        result = dcctl("--yes", "-o", "json", "failover", config=config, check=False, timeout=120)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["outcome"] == "success" and "SIGKILL" in report["observed"]["fenced_by"]
        assert all(not procs.alive(pid) for pid in frozen)  # no backend left to acknowledge a commit
        assert (lab.spec.pgdata(old) / "standby.signal").exists()
    finally:
        signal_all(frozen, signal.SIGCONT)
    with app_connect(lab, other(old)) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS after_fence (id int)")
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in frozen), what="the killed server reaped")
    dcctl("--yes", "rejoin", "--site", old, config=config, timeout=300)
    dcctl("--yes", "switchover", config=config)
    assert_streaming_pair(lab, old)


def test_a_fence_that_cannot_stop_the_server_says_why_in_one_line(local_lab):
    """The fence escalation's own error, never the script: a postmaster.pid naming a process that
    does not run in the data directory is refused (a PID reused by something else)."""
    lab = local_lab
    old = primary_of(lab)
    sleeper = subprocess.Popen(["sleep", "60"])
    pidfile = lab.spec.pgdata(old) / "postmaster.pid"
    saved = pidfile.read_text()
    try:
        pidfile.write_text(f"{sleeper.pid}\n" + saved.split("\n", 1)[1])
        result = dcctl("--yes", "failover", config=str(lab.spec.config_path), check=False, timeout=120)
    finally:
        pidfile.write_text(saved)
        sleeper.kill()
        sleeper.wait()
    assert result.returncode == 1, result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("dcctl: error:"))
    assert "cannot fence site" in error and "does not run in" in error
    assert "pidfile=" not in result.stderr and "cmdline()" not in result.stderr  # never the script
    # The failover stopped before promoting: roles unchanged.
    assert roles(lab)[old][0] == "primary"
    op = newest_operation(lab, "failover")
    from dcctl.ops.journal import Journal

    Journal.open(lab.spec.state_dir, op).append("finish", outcome="abandoned", reason="test clean-up")
    dcctl("resume", op, config=str(lab.spec.config_path))  # releases the finished operation's lock
    assert_streaming_pair(lab, old)


# ---- item 7: Ctrl-C ------------------------------------------------------------------------

def slow_hook_config(lab_, name, point, seconds=3):
    def edit(data):
        data["services"]["massar"]["hooks"] = {point: [{"site": "new_primary", "run": f"sleep {seconds}"}]}
    return config_variant(lab_, name, edit)


def start_switchover(config):
    env = dict(os.environ, DCCTL_CONFIG=config)
    return subprocess.Popen([sys.executable, "-m", "dcctl", "--yes", "switchover"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def operation_ids(lab_) -> set[str]:
    operations = lab_.spec.state_dir / "operations"
    return {p.name for p in operations.iterdir()} if operations.exists() else set()


def wait_step_started(lab_, step, known: set[str]) -> str:
    """Until an operation that is not in `known` journals the start of `step`; returns its id."""
    def started():
        for op in operation_ids(lab_) - known:
            journal = lab_.spec.state_dir / "operations" / op / "journal.jsonl"
            lines = journal.read_text().splitlines() if journal.exists() else []
            if any('"step_start"' in line and json.loads(line).get("step") == step for line in lines):
                return op
        return None
    return wait_for(started, timeout=60, interval=0.02, what=f"step {step} to start")


def test_ctrl_c_before_promotion_rolls_back_and_exits_130(local_lab):
    lab = local_lab
    start = primary_of(lab)
    config = slow_hook_config(lab, "slow-before", "before_switch")
    with Writer(lab.spec.app_dsn(), rate=200) as writer:
        writer.wait_for_commits(20)
        known = operation_ids(lab)
        proc = start_switchover(config)
        wait_step_started(lab, "hook:before_switch", known)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        writer.wait_for_commits(20)
    assert proc.returncode == 130, err
    assert "rolled back" in err and "Traceback" not in err
    assert_streaming_pair(lab, start)
    assert missing_ids(lab.spec.app_dsn(), writer.stats.acknowledged) == []
    assert history(config)[0]["outcome"] == "rolled_back"


def test_ctrl_c_after_promotion_stops_for_resume_and_exits_130(local_lab):
    lab = local_lab
    start = primary_of(lab)
    config = slow_hook_config(lab, "slow-after", "after_promote")
    with Writer(lab.spec.app_dsn(), rate=200) as writer:
        writer.wait_for_commits(20)
        known = operation_ids(lab)
        proc = start_switchover(config)
        op = wait_step_started(lab, "hook:after_promote", known)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "dcctl resume" in err and "Traceback" not in err
        dcctl("--yes", "resume", op, config=config, timeout=120)
        writer.wait_for_commits(20)
    assert_streaming_pair(lab, other(start))
    assert missing_ids(lab.spec.app_dsn(), writer.stats.acknowledged) == []
    dcctl("--yes", "switchover", config=str(lab.spec.config_path))
    assert_streaming_pair(lab, start)


def test_a_second_ctrl_c_stops_at_once_and_resume_finishes(local_lab):
    lab = local_lab
    start = primary_of(lab)
    config = slow_hook_config(lab, "slower-after", "after_promote", seconds=600)
    known = operation_ids(lab)
    proc = start_switchover(config)
    op = wait_step_started(lab, "hook:after_promote", known)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)  # far shorter than the hook: it was not waited for
    assert proc.returncode == 130, err
    assert "second Ctrl-C" in err and "dcctl resume" in err and "Traceback" not in err
    dcctl("--yes", "resume", op, config=str(lab.spec.config_path), timeout=120)
    assert_streaming_pair(lab, other(start))
    dcctl("--yes", "switchover", config=str(lab.spec.config_path))
    assert_streaming_pair(lab, start)


def test_the_fence_escalates_to_sigkill_of_a_server_that_ignores_shutdown_signals(open_tmp):
    """A stand-in postmaster that runs in its data directory and ignores SIGINT and SIGQUIT (a hung
    server), with a child: the fence ends it and its child with SIGKILL once the budget of the
    gentler signals is spent."""
    from dcctl.pg.tools import fence_postmaster

    data = open_tmp / "pgdata"
    data.mkdir()
    server = subprocess.Popen(["sh", "-c", "trap '' INT QUIT; sleep 300 & wait"], cwd=data)
    wait_for(lambda: any(f"PPid:\t{server.pid}\n" in p.read_text() for p in Path("/proc").glob("[0-9]*/status")
                         if p.exists()), what="the child to start")
    child = next(int(p.parent.name) for p in Path("/proc").glob("[0-9]*/status")
                 if p.exists() and f"PPid:\t{server.pid}\n" in p.read_text())
    (data / "postmaster.pid").write_text(f"{server.pid}\n{data}\n")
    try:
        result = subprocess.run(fence_postmaster(str(data), 1.0), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "stopped (SIGKILL)"
        assert "still running after SIGINT" in result.stderr and "still running after SIGQUIT" in result.stderr
        server.wait(timeout=10)
        wait_for(lambda: not procs.alive(child), what="the child killed too")
    finally:
        server.kill()


def test_a_command_that_times_out_is_named_not_quoted_whole(ssh_lab):
    """The 27-line error of the independent run: a timed-out `sh -c SCRIPT` printed the script."""
    from dcctl.config import load_config
    from dcctl.errors import CommandTimeout
    from dcctl.transport import open_transport

    config = load_config(str(ssh_lab.spec.config_path))
    _, service = config.service(None)
    with open_transport("rabat", service.sites["rabat"]) as transport:
        with pytest.raises(CommandTimeout) as raised:
            transport.run(["sh", "-c", "# a long script\nsleep 30\n", "dcctl-example", "/some/dir"], timeout=1)
    assert raised.value.message.startswith("dcctl-example /some/dir did not finish within 1 s")
    assert "sleep 30" not in raised.value.message and "\n" not in raised.value.message
