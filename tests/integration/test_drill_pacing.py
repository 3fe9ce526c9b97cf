"""The drill's evenly paced copy (dcctl/drill/pacing.py): a tar stream whose WAL is fetched from the
standby at its end, kept there meanwhile by a slot that no drill leaves behind; and the server's
own limit (drill.pacing: server) still works."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dcctl.lab import procs
from dcctl.ops.steps.drill import DRILL_SLOT
from tests.integration.conftest import app_connect, config_variant, dcctl, local_lab, wait_for  # noqa: F401

pytestmark = pytest.mark.lab


def drill_config(lab_, name: str, **drill) -> str:
    def edit(data):
        data["services"]["massar"]["drill"].update(drill)
    return config_variant(lab_, name, edit)


def standby_slots(lab_) -> list[str]:
    with app_connect(lab_, "backup", dbname="postgres") as conn:
        return [row[0] for row in conn.execute("SELECT slot_name FROM pg_catalog.pg_replication_slots")]


def copying(lab_) -> bool:
    """The standby's walsender is sending the drill's copy."""
    with app_connect(lab_, "backup", dbname="postgres") as conn:
        return conn.execute("SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'walsender' "
                            "AND application_name = 'dcctl drill'").fetchone()[0] > 0


def copy_processes(lab_) -> list[int]:
    """pg_basebackup processes of drills in this lab (a killed drill's copy runs on by itself)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError, PermissionError):
            continue
        if entry.name.isdigit() and "pg_basebackup" in cmdline and "dcctl drill" in cmdline \
                and str(lab_.spec.root) in cmdline and not cmdline.startswith("sh "):
            found.append(int(entry.name))
    return found


def drill_report(config: str) -> dict:
    return json.loads(dcctl("--yes", "-o", "json", "drill", config=config, timeout=300).stdout)


def test_the_paced_copy_keeps_its_wal_through_restartpoints_and_drops_its_slot(local_lab):
    """Without the slot, the WAL the copy fetches at its end is gone once the standby has made a
    restartpoint past the copy's start (wal_keep_size 0 here): the drill failed."""
    config = drill_config(local_lab, "slow-even-drill", max_rate_mb=2, pacing="even")
    with app_connect(local_lab, "backup", dbname="postgres") as standby:
        standby.execute("ALTER SYSTEM SET wal_keep_size = 0")
        standby.execute("SELECT pg_catalog.pg_reload_conf()")
    drill = subprocess.Popen([sys.executable, "-m", "dcctl", "-c", config, "--yes", "-o", "json", "drill"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: copying(local_lab), timeout=60, interval=0.05, what="the drill's copy")
        with app_connect(local_lab, "rabat") as primary:
            primary.execute("CREATE TABLE wal_filler AS SELECT pg_catalog.repeat('x', 900) AS pad "
                            "FROM pg_catalog.generate_series(1, 60000)")
            primary.execute("CHECKPOINT")
            lsn = primary.execute("SELECT pg_catalog.pg_current_wal_lsn()").fetchone()[0]
            primary.execute("DROP TABLE wal_filler")
        with app_connect(local_lab, "backup", dbname="postgres") as standby:
            wait_for(lambda: standby.execute("SELECT pg_catalog.pg_last_wal_replay_lsn() >= %s::pg_lsn",
                                             (lsn,)).fetchone()[0], timeout=60, what="the standby replaying")
            standby.execute("CHECKPOINT")  # a restartpoint: WAL older than its redo may go
        assert copying(local_lab), "the copy ended before the restartpoint: the test proves nothing"
        out, err = drill.communicate(timeout=300)
    finally:
        if drill.poll() is None:
            drill.kill()
        with app_connect(local_lab, "backup", dbname="postgres") as standby:
            standby.execute("ALTER SYSTEM RESET wal_keep_size")
            standby.execute("SELECT pg_catalog.pg_reload_conf()")
    assert drill.returncode == 0, err
    report = json.loads(out)
    assert report["outcome"] == "success" and report["observed"]["copy_pacing"] == "even"
    assert DRILL_SLOT not in standby_slots(local_lab)


def test_a_drill_killed_while_copying_leaves_a_slot_that_cleanup_drops(local_lab):
    config = drill_config(local_lab, "killed-even-drill", max_rate_mb=2, pacing="even")
    drill = subprocess.Popen([sys.executable, "-m", "dcctl", "-c", config, "--yes", "drill"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: copying(local_lab), timeout=60, interval=0.05, what="the drill's copy")
    os.kill(drill.pid, signal.SIGKILL)
    drill.wait(timeout=30)
    assert DRILL_SLOT in standby_slots(local_lab)
    cleaned = dcctl("drill", "--cleanup", config=config)
    assert "removed 1 leftover drill copy" in cleaned.stdout
    assert f"dropped the replication slot {DRILL_SLOT}" in cleaned.stdout
    assert DRILL_SLOT not in standby_slots(local_lab)
    for pid in copy_processes(local_lab):  # the orphaned copy, its directory gone, is stopped by PID
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not copy_processes(local_lab), timeout=60, what="the orphaned copy to end")
    assert drill_report(config)["outcome"] == "success"


def test_the_servers_own_rate_limit_still_copies(local_lab):
    report = drill_report(drill_config(local_lab, "server-paced-drill", pacing="server"))
    assert report["outcome"] == "success" and report["observed"]["copy_pacing"] == "server"
    assert DRILL_SLOT not in standby_slots(local_lab)
    assert procs.port_free(local_lab.spec.base_port + 6)
