"""PgBouncer around switchover and failover, on one lab with a pooler per site (local transport):
the application behind the pooler sees no error and loses no commit; a transaction that outlives
pause_timeout rolls the switchover back with the pooler resumed and the client named; a kill -9
while paused is undone by `dcctl resume`; the agent resumes a pooler left paused; a failover
reports the pooler it cannot reach."""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from dcctl.lab import pgbouncer, procs
from dcctl.lab.lab import Lab, lab_down
from dcctl.lab.pooled_writer import PooledWriter
from dcctl.lab.writer import missing_ids
from dcctl.ops.playbook import builtin_steps
from tests.integration.conftest import config_variant, dcctl, free_port_block, status_json, wait_for

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def plab():
    root = Path(tempfile.mkdtemp(prefix="dcctl-poolerlab-", dir="/tmp"))
    root.chmod(0o755)
    lab_ = Lab.up(root / "lab", base_port=free_port_block(), transport="local")
    try:
        pgbouncer.enable(lab_)
        yield lab_
    finally:
        lab_down(lab_.spec.dir)
        root.rmdir()


def config(lab_) -> str:
    return str(lab_.spec.config_path)


def primary_of(lab_) -> str:
    return status_json(config(lab_))["primary"]


def other(site: str) -> str:
    return "backup" if site == "rabat" else "rabat"


def console(lab_, site: str) -> psycopg.Connection:
    port = pgbouncer.ports(lab_.spec)[site]
    return psycopg.connect(host="127.0.0.1", port=port, dbname="pgbouncer", user="postgres",
                           passfile=str(lab_.spec.pgpass), autocommit=True, connect_timeout=5)


def pooler_view(lab_, site: str) -> dict:
    """SHOW DATABASES' row for massar at the pooler of `site`."""
    with console(lab_, site) as conn:
        cur = conn.execute("SHOW DATABASES")
        names = [c.name for c in cur.description]
        return next(dict(zip(names, row)) for row in cur.fetchall() if row[0] == "massar")


def assert_pointing_at(lab_, site: str) -> None:
    for pooler_site in pgbouncer.ports(lab_.spec):
        row = pooler_view(lab_, pooler_site)
        assert (row["port"], row["paused"]) == (lab_.spec.pg_port(site), 0), (pooler_site, row)


def switchover(lab_, *extra, config_path=None, check=True):
    return dcctl("--yes", "-o", "json", "switchover", *extra, config=config_path or config(lab_), check=check)


def test_switchover_there_and_back_through_the_poolers_shows_no_error(plab):
    start = primary_of(plab)
    # 200 tps on four connections, two through each site's pooler, plus one long-lived session
    writer = PooledWriter([pgbouncer.app_dsn(plab.spec, site) for site in ("rabat", "backup")], rate=200)
    with writer:
        writer.wait_for_commits(20)
        there = json.loads(switchover(plab).stdout)
        assert there["outcome"] == "success", there
        assert_pointing_at(plab, other(start))
        writer.wait_for_commits(20)
        back = json.loads(switchover(plab).stdout)
        assert back["outcome"] == "success", back
        writer.wait_for_commits(20)
    assert_pointing_at(plab, start)
    for report in (there, back):
        assert report["observed"]["poolers_paused"] == ["rabat-bouncer", "backup-bouncer"]
        assert sorted(report["observed"]["poolers_resumed"]) == ["backup-bouncer", "rabat-bouncer"]
    assert writer.stats.errors == []
    assert missing_ids(plab.spec.app_dsn(), writer.stats.acknowledged) == []
    print(f"\nthrough the poolers: {len(writer.stats.acknowledged)} commits, 0 errors, longest commit "
          f"{writer.stats.longest_commit():.3f} s (p99 {writer.stats.p99():.3f} s)")


def test_a_transaction_outliving_pause_timeout_rolls_back_with_the_pooler_resumed(plab):
    start = primary_of(plab)

    def short_pause(data):
        for pooler in data["services"]["massar"]["poolers"]:
            pooler["pause_timeout"] = 1.0

    variant = config_variant(plab, "short-pause", short_pause)
    held = psycopg.connect(pgbouncer.app_dsn(plab.spec, "rabat") + " application_name=held-open-test",
                           autocommit=False, prepare_threshold=None)
    try:
        held.execute("INSERT INTO dcctl_writer (id) VALUES (-1)")
        failed = switchover(plab, config_path=variant, check=False)
        assert failed.returncode != 0
        assert "did not pause within 1 s" in failed.stderr and "held-open-test" in failed.stderr, failed.stderr
        assert "Traceback" not in failed.stderr
        assert primary_of(plab) == start
        assert_pointing_at(plab, start)  # resumed, still on the primary that never stopped
        held.commit()  # the transaction that held the pause commits on the untouched primary
    finally:
        held.close()
    with psycopg.connect(plab.spec.app_dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM dcctl_writer WHERE id = -1").fetchone()[0] == 1
        conn.execute("DELETE FROM dcctl_writer WHERE id = -1")


POOLER_POINTS = [(step, moment) for step in builtin_steps("switchover") if step.endswith("_poolers")
                 for moment in ("start", "end")]


@pytest.mark.parametrize("step, moment", POOLER_POINTS, ids=[f"{m}-{s}" for s, m in POOLER_POINTS])
def test_kill_at_a_pooler_step_then_resume_leaves_no_pooler_paused_and_loses_nothing(plab, step, moment):
    """The crash points of the pooler steps, on a lab that has poolers (tests/integration/
    test_crash_points.py enumerates every other step on a lab without, where these do nothing).
    Killed at the end of pause_poolers is the worst place: the applications queue."""
    start = primary_of(plab)
    env = dict(os.environ, DCCTL_CONFIG=config(plab), DCCTL_FAULT_AT=f"{step}:{moment}:kill")
    with PooledWriter(pgbouncer.app_dsn(plab.spec, start), rate=100, connections=2) as writer:
        writer.wait_for_commits(10)
        crashed = subprocess.run([sys.executable, "-m", "dcctl", "--yes", "switchover"], capture_output=True,
                                 text=True, env=env, timeout=120)
        assert crashed.returncode == 99, crashed.stderr
        if (step, moment) == ("pause_poolers", "end"):
            assert pooler_view(plab, start)["paused"] == 1
        op_id = re.search(r"switchover (\S+-switchover-\w+):", crashed.stderr).group(1)
        resumed = dcctl("-o", "json", "resume", op_id, config=config(plab), check=False)
        outcome = json.loads(resumed.stdout)["outcome"]
        assert outcome in ("rolled_back", "success"), resumed.stderr
        writer.wait_for_commits(10)
    now = primary_of(plab)
    assert now == (start if outcome == "rolled_back" else other(start))
    assert_pointing_at(plab, now)
    assert all(pooler_view(plab, site)["paused"] == 0 for site in ("rabat", "backup"))
    assert writer.stats.errors == []
    assert missing_ids(plab.spec.app_dsn(), writer.stats.acknowledged) == []


def test_the_agent_resumes_a_pooler_left_paused_only_when_no_operation_holds_the_lock(plab):
    from dcctl.agent.poolers import PoolerSource
    from dcctl.agent.setup import resolve
    from dcctl.config import load_config
    from dcctl.ops.lock import LockOwner, site_lock_path

    def quick(data):
        for pooler in data["services"]["massar"]["poolers"]:
            pooler["stuck_pause_after"] = 1.0

    loaded = load_config(config_variant(plab, "quick-unpause", quick))
    source = PoolerSource(resolve(loaded, "rabat", "massar"), "massar")
    with console(plab, "rabat") as conn:
        conn.execute("PAUSE massar")
    lock = Path(site_lock_path(loaded.services["massar"].sites["rabat"].state_dir, "massar"))
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(LockOwner("test-live-operation", socket.gethostname(), os.getpid(), time.time()).to_json())
    try:
        source.collect()
        time.sleep(1.2)
        held = source.collect()
        assert held.looks[0].state.any_paused and "holds the lock" in held.looks[0].action
    finally:
        lock.unlink()
    freed = source.collect()
    assert not freed.looks[0].state.any_paused and "resuming it" in freed.looks[0].action
    assert pooler_view(plab, "rabat")["paused"] == 0
    values = {(s.name, s.labels["pooler"]): s.value for s in source.samples(freed)}
    assert values[("dcctl_pooler_agent_resumes_total", "rabat-bouncer")] == 1
    assert values[("dcctl_pooler_paused", "rabat-bouncer")] == 0
    assert values[("dcctl_pooler_points_at_primary", "rabat-bouncer")] == 1
    once = dcctl("agent", "run", "--site", "rabat", "--once", config=config(plab), check=False)
    assert 'dcctl_pooler_up{pooler="rabat-bouncer",service="massar"} 1.0' in once.stdout, once.stdout[-3000:]
    assert 'dcctl_pooler_points_at_primary{pooler="rabat-bouncer",service="massar"} 1.0' in once.stdout


def test_failover_repoints_the_reachable_pooler_and_reports_the_other(plab):
    old = primary_of(plab)
    new = other(old)
    pgbouncer.stop(plab.spec, old)  # the pooler at the lost site
    pid = plab.running(old)
    os.kill(pid, 9)
    wait_for(lambda: not procs.alive(pid), what="the killed postmaster to be gone")
    report = json.loads(dcctl("--yes", "-o", "json", "failover", config=config(plab)).stdout)
    assert report["outcome"] == "success"
    observed = report["observed"]
    assert observed["poolers_repointed"] == [f"{new}-bouncer"]
    assert list(observed["poolers_unreachable"]) == [f"{old}-bouncer"]
    row = pooler_view(plab, new)
    assert (row["port"], row["paused"]) == (plab.spec.pg_port(new), 0)
    with psycopg.connect(pgbouncer.app_dsn(plab.spec, new), prepare_threshold=None, autocommit=True) as conn:
        conn.execute("INSERT INTO dcctl_writer (id) VALUES (-2)")  # writes go through to the new primary
    checked = dcctl("check", "-o", "json", "--check", "pooler", config=config(plab), check=False)
    results = json.loads(checked.stdout)["services"][0]["checks"]
    assert any(r["status"] == "CRIT" and f"{old}-bouncer" in r["detail"] for r in results), results
    # Leave the lab as a streaming pair with both poolers up.
    wait_for(lambda: _reaped(pid), what="the killed postmaster to be reaped")
    dcctl("--yes", "rejoin", "--site", old, config=config(plab), timeout=300)
    pgbouncer.start(plab)
    switchover(plab)  # back, and it points the restarted pooler at the primary again
    assert_pointing_at(plab, old)


def _reaped(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        return True
