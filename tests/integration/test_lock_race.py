"""The operation lock on the lab, over both transports: two processes started at the same instant
(a barrier both spin on) get it exactly once; a lock left by a finished operation is released by
the next command that meets it (issue items 4 and 6, docs/reliability.md)."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import app_connect, dcctl, lab, wait_for  # noqa: F401

pytestmark = pytest.mark.lab

DRIVER = str(Path(__file__).with_name("lock_driver.py"))
ROOT = str(Path(__file__).parents[2])


def primary_of(lab_) -> str:
    for site in ("rabat", "backup"):
        with app_connect(lab_, site, "postgres") as conn:
            if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                return site
    raise AssertionError("no primary")


def lock_files(lab_) -> list[Path]:
    places = [lab_.spec.state_dir / "locks"] + [lab_.spec.site_dir(site) / "dcctl-state" for site in ("rabat", "backup")]
    return [path for place in places for path in place.glob("massar.lock")]


def start_at_barrier(argvs: list[list[str]], barrier: Path, env: dict) -> list[subprocess.Popen]:
    """Starts the processes, waits until each is ready at the barrier, then lets them all go."""
    env = dict(env, DCCTL_TEST_LOCK_BARRIER=str(barrier), PYTHONPATH=ROOT)
    procs = [subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for argv in argvs]
    for proc in procs:
        ready = Path(f"{barrier}.{proc.pid}.ready")
        wait_for(lambda: ready.exists() or proc.poll() is not None, timeout=60, what=f"{proc.args} at the barrier")
        assert proc.poll() is None, proc.communicate()
    barrier.touch()
    return procs


def test_two_hosts_taking_the_lock_at_the_same_instant_exactly_one_wins(lab, tmp_path):
    """50 pairs of processes, each with its own local state_dir as if on two hosts, so that only
    the sites' lock files (created over the lab's real transport) decide."""
    config = str(lab.spec.config_path)
    sites = [lab.spec.site_dir(site) / "dcctl-state" / "massar.lock" for site in ("backup", "rabat")]
    for attempt in range(50):
        ops = [f"race{attempt}-switchover-{i}" for i in range(2)]
        homes = [tmp_path / f"host{i}" for i in range(2)]
        procs = start_at_barrier([[sys.executable, DRIVER, config, op, str(home)] for op, home in zip(ops, homes)],
                                 tmp_path / f"go{attempt}", dict(os.environ))
        first = [proc.stdout.readline().strip() for proc in procs]
        assert sorted(line.split()[0] for line in first) == ["acquired", "refused"], (attempt, first)
        winner = first.index("acquired")
        assert f"locked by operation {ops[winner]}" in first[1 - winner] and "at backup" in first[1 - winner], first
        winner_lock = (homes[winner] / "locks" / "massar.lock").read_text()
        assert [path.read_text() for path in sites] == [winner_lock] * 2
        assert not (homes[1 - winner] / "locks" / "massar.lock").exists()  # the loser gave its own back
        for proc in procs:
            proc.communicate("release\n", timeout=60)
        assert [proc.returncode for proc in procs] == ([0, 5] if winner == 0 else [5, 0])
        assert not any(path.exists() for path in sites)


def test_two_switchovers_at_the_same_instant_exactly_one_runs(lab, tmp_path):
    config = str(lab.spec.config_path)
    env = dict(os.environ, DCCTL_CONFIG=config)
    for attempt in range(50):
        before = primary_of(lab)
        procs = start_at_barrier([[sys.executable, "-m", "dcctl", "--yes", "switchover"]] * 2,
                                 tmp_path / f"go{attempt}", env)
        results = [proc.communicate(timeout=300) for proc in procs]
        codes = [proc.returncode for proc in procs]
        assert sorted(codes) == [0, 5], (codes, results)
        winner_err, loser_err = results[codes.index(0)][1], results[codes.index(5)][1]
        winner_op = re.search(r"switchover (\S+-switchover-\w+):", winner_err).group(1)
        assert f"is locked by operation {winner_op}" in loser_err, loser_err
        assert "Traceback" not in loser_err
        assert primary_of(lab) != before  # swapped exactly once
        assert lock_files(lab) == []


def test_a_lock_left_by_a_finished_operation_is_released_by_the_next_command(lab):
    config = str(lab.spec.config_path)
    crashed_ops = []
    for release_by in ("resume", "switchover"):
        before = primary_of(lab)
        env = dict(os.environ, DCCTL_CONFIG=config, DCCTL_FAULT_BEFORE_UNLOCK="1")
        crashed = subprocess.run([sys.executable, "-m", "dcctl", "--yes", "switchover"], capture_output=True,
                                 text=True, env=env, timeout=300)
        assert crashed.returncode == 99, crashed.stderr
        op_id = re.search(r"switchover (\S+-switchover-\w+):", crashed.stderr).group(1)
        crashed_ops.append(op_id)
        assert primary_of(lab) != before
        assert len(lock_files(lab)) == 3  # the journal says success; the lock stayed everywhere

        if release_by == "resume":
            resumed = dcctl("resume", op_id, config=config)
            assert f"nothing to resume: {op_id}" in resumed.stdout
            assert f"released the lock left by finished operation {op_id}" in resumed.stderr
            assert lock_files(lab) == []
        else:
            after = dcctl("--yes", "switchover", config=config)
            assert f"released the lock left by finished operation {op_id}" in after.stderr
            assert primary_of(lab) == before
            assert lock_files(lab) == []
    if primary_of(lab) != "rabat":
        dcctl("--yes", "switchover", config=config)
