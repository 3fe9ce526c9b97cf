"""Failover after the primary's postmaster is killed, fencing, and rejoin of a diverged old
primary that counts exactly the commits the rewind discards."""
import json
import os
import signal
import subprocess

import psycopg
import pytest

from dcctl.lab import procs
from tests.integration.conftest import app_connect, dcctl, local_lab, ssh_lab, status_json, wait_for  # noqa: F401

pytestmark = pytest.mark.lab


def primary_of(lab_) -> str:
    return status_json(str(lab_.spec.config_path))["primary"]


def kill_postmaster(lab_, site):
    pid = lab_.running(site)
    assert pid
    import os
    import signal

    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not procs.alive(pid), what="the killed postmaster to be gone")


def wait_reaped(pid):
    """Until the killed postmaster's zombie is reaped: PostgreSQL will not start while its PID exists."""
    import os

    def gone():
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return True

    wait_for(gone, timeout=30, what=f"pid {pid} to be reaped")


def test_failover_fences_promotes_and_rejoin_counts_the_diverged_commits(local_lab):
    lab = local_lab
    config = str(lab.spec.config_path)
    old = primary_of(lab)
    new = "backup" if old == "rabat" else "rabat"
    with app_connect(lab, old) as conn:
        conn.execute("CREATE TABLE diverge (id int PRIMARY KEY, side text)")
        conn.execute("INSERT INTO diverge SELECT g, 'shared' FROM generate_series(1, 10) g")
    wait_for(lambda: status_json(config)["sites"][1 if new == "backup" else 0]["lag"]["bytes"] == 0,
             what="the standby to catch up")

    kill_postmaster(lab, old)
    report = json.loads(dcctl("--yes", "-o", "json", "failover", config=config).stdout)
    assert report["outcome"] == "success" and report["new_primary"] == new
    assert "stopped over local" in report["observed"]["fenced_by"]
    assert report["data_loss"].startswith("possible") and report["observed"]["last_received_lsn"]
    with app_connect(lab, new) as conn:
        conn.execute("INSERT INTO diverge VALUES (100, 'new primary')")

    refused = dcctl("node", "start", "--site", old, config=config, check=False)
    assert refused.returncode == 5 and "fenced" in refused.stderr and f"dcctl rejoin --site {old}" in refused.stderr
    assert (lab.spec.pgdata(old) / "standby.signal").exists()  # a restart behind dcctl's back stays read-only

    # Someone starts the old primary by hand anyway, as a primary, and it takes writes: divergence.
    wait_reaped(int((lab.spec.pgdata(old) / "postmaster.pid").read_text().split()[0]))
    (lab.spec.pgdata(old) / "standby.signal").unlink()
    lab.start(old)
    with app_connect(lab, old) as conn:
        for i in range(7):
            conn.execute("INSERT INTO diverge VALUES (%s, 'lost on the old primary')", (1000 + i,))
            if i == 3:
                conn.execute("SELECT pg_switch_wal()")  # the diverged commits span two WAL segments

    # Its agent sees a primary on an older generation: it alarms, and stops it.
    running = lab.running(old)
    once = dcctl("agent", "run", "--site", old, "--once", config=config, check=False)
    assert f'dcctl_check_status{{check="generation",service="massar"}} 2.0' in once.stdout, once.stdout[-2000:]
    assert "STALE PRIMARY" in once.stderr
    wait_for(lambda: not procs.alive(running), what="the stale primary to be stopped by its agent")

    rejoin = dcctl("--yes", "-o", "json", "rejoin", "--site", old, "--keep-diverged", config=config)
    report = json.loads(rejoin.stdout)
    observed = report["observed"]
    assert report["outcome"] == "success"
    assert observed["diverged_commits"] == 7
    assert observed["diverged_tables"] == ["massar.public.diverge"]
    assert "7 transaction(s) committed" in report["data_loss"]
    kept = observed["kept_diverged"]
    assert kept and (lab.spec.pgdata(old).parent / kept.rsplit("/", 1)[1]).exists()
    assert observed["rewind"] == "pg_rewind"

    sites = {s["site"]: s for s in status_json(config)["sites"]}
    assert sites[old]["role"] == "standby" and sites[new]["role"] == "primary"
    wait_for(lambda: {s["site"]: s for s in status_json(config)["sites"]}[old]["streaming"], what="streaming")

    def rows_on_old():
        with app_connect(lab, old) as conn:
            return conn.execute("SELECT array_agg(id ORDER BY id) FROM diverge").fetchone()[0]

    assert wait_for(lambda: 100 in (rows_on_old() or []) and rows_on_old(), what="new rows on the old primary") \
        == list(range(1, 11)) + [100]

    again = dcctl("--yes", "rejoin", "--site", old, config=config, check=False)
    assert again.returncode == 5 and "already streams" in again.stderr


def test_failover_of_an_unreachable_primary_needs_a_typed_declaration(ssh_lab):
    lab = ssh_lab
    config = str(lab.spec.config_path)
    old = primary_of(lab)
    new = "backup" if old == "rabat" else "rabat"
    lab.sshds()[old].stop()
    kill_postmaster(lab, old)
    try:
        refused = dcctl("--yes", "failover", config=config, check=False)
        assert refused.returncode == 5
        assert f"site {old} is unreachable" in refused.stderr and "--primary-is-down" in refused.stderr

        untyped = dcctl("--yes", "failover", "--primary-is-down", config=config, check=False)
        assert untyped.returncode == 2 and f"--confirm-site {old}" in untyped.stderr

        wrong = dcctl("--yes", "failover", "--primary-is-down", "--confirm-site", new, config=config, check=False)
        assert wrong.returncode == 5
        assert primary_of(lab) is None

        done = json.loads(dcctl("--yes", "-o", "json", "failover", "--primary-is-down", "--confirm-site", old,
                                config=config).stdout)
        assert done["outcome"] == "success" and "declared" in done["observed"]["fenced_by"]
        with psycopg.connect(lab.spec.app_dsn()) as conn:
            conn.execute("CREATE TABLE after_failover (id int)")
    finally:
        lab.sshds()[old].start()
    rejoined = json.loads(dcctl("--yes", "-o", "json", "rejoin", "--site", old, config=config).stdout)
    assert rejoined["outcome"] == "success"
    assert rejoined["observed"]["diverged_commits"] == 0


def checkpoint_timeline(lab_, site: str) -> int:
    from dcctl.lab.lab import find_bin_dir

    out = subprocess.run([f"{find_bin_dir()}/pg_controldata", "-D", str(lab_.spec.pgdata(site))],
                         capture_output=True, text=True, check=True).stdout
    return int(next(line for line in out.splitlines() if line.startswith("Latest checkpoint's TimeLineID")
                    ).split(":")[1])


def test_rejoin_counts_the_commits_of_a_primary_that_died_before_its_first_checkpoint(local_lab):
    """Found by bench/chaos.py (seed 1, operation 44): a primary promoted moments ago still has its
    old timeline in its control file (the checkpoint after a promotion is spread); killed then, its
    rejoin looked for the fork of that old timeline and counted 0 of the commits it discarded."""
    lab = local_lab
    config = str(lab.spec.config_path)
    if primary_of(lab) != "rabat":
        dcctl("--yes", "switchover", "--to", "rabat", config=config)
    with app_connect(lab, "rabat") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS unchecked (id int PRIMARY KEY)")
    dcctl("--yes", "switchover", "--to", "backup", config=config)
    with app_connect(lab, "backup") as conn:
        sender = conn.execute("SELECT pid FROM pg_stat_replication").fetchone()[0]
        os.kill(sender, signal.SIGSTOP)  # what backup commits now never reaches rabat
        try:
            for i in range(5):
                conn.execute("INSERT INTO unchecked VALUES (%s)", (i,))
            timeline = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()[0]
            writing_on = int(conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0][:8], 16)
            kill_postmaster(lab, "backup")
        finally:
            os.kill(sender, signal.SIGKILL)
    assert checkpoint_timeline(lab, "backup") == timeline < writing_on  # the case itself: no checkpoint yet

    failover = json.loads(dcctl("--yes", "-o", "json", "failover", config=config).stdout)
    assert failover["outcome"] == "success" and failover["new_primary"] == "rabat"
    rejoin = json.loads(dcctl("--yes", "-o", "json", "rejoin", "--site", "backup", config=config).stdout)
    assert rejoin["outcome"] == "success"
    assert rejoin["observed"]["diverged_commits"] == 5, rejoin["observed"]["divergence"]
    assert rejoin["observed"]["fork_timeline"] == writing_on
    wait_for(lambda: status_json(config)["primary"] == "rabat" and all(
        s.get("streaming") for s in status_json(config)["sites"] if s["site"] == "backup"), timeout=60,
        what="backup streaming from rabat")
