"""Disk full at the standby site: its WAL volume, and the file store that receives the primary's
files. Each volume is a small tmpfs mounted over the lab's directory (root only). Promise: the
checks go CRIT and name the volume, a switchover is refused before anything stops, file sync holds
back and finishes once space returns, and nothing is lost on either side."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dcctl.lab.lab import Lab
from tests.integration.conftest import app_connect, check_json, dcctl, local_lab, results_named, status_json, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")

lab = local_lab
STANDBY = "backup"


@contextlib.contextmanager
def small_volume(lab_: Lab, path: Path, size: str):
    """A tmpfs of `size` mounted at `path`, owned by the lab's user; unmounted (lazily, a server may
    still hold a file there) whatever happens."""
    path.mkdir(parents=True, exist_ok=True)
    user = lab_.user
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700,uid={user.pw_uid},gid={user.pw_gid}",
                    "dcctl-lab-full", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def grow(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def refused_switchover(config: str) -> str:
    result = dcctl("--yes", "switchover", "--to", STANDBY, config=config, check=False)
    assert result.returncode == 5, f"expected a refusal (exit 5), got {result.returncode}:\n{result.stderr}"
    return result.stderr


def test_a_full_receiving_file_store_is_crit_refuses_a_switchover_and_loses_no_file(lab):
    config = str(lab.spec.config_path)
    primary_store, standby_store = lab.spec.store_dir("rabat", "documents"), lab.spec.store_dir(STANDBY, "documents")
    shutil.rmtree(standby_store)
    with small_volume(lab, standby_store, "1m"):
        for i in range(40):
            path = primary_store / f"full-{i:02d}.bin"
            path.write_bytes(os.urandom(64 * 1024))  # 2.5 MB in all
            os.chown(path, lab.user.pw_uid, lab.user.pw_gid)  # the application's files, not root's
        written = digest(primary_store)

        sync = dcctl("--yes", "filesync", "run", config=config, check=False)
        assert sync.returncode != 0
        assert "No space left on device" in sync.stderr + sync.stdout
        assert digest(primary_store) == written  # the source is never touched

        status, checks = check_json(config, "disk_free")
        crit = [c for c in results_named(checks, "disk_free", STANDBY) if c["status"] == "CRIT"]
        assert status == 2 and crit and "store:documents" in crit[0]["detail"]

        stderr = refused_switchover(config)
        assert "store:documents" in stderr and "free" in stderr
        assert status_json(config)["sites"][0]["role"] == "primary"  # nothing was stopped

        grow(standby_store, "64m")
        dcctl("--yes", "filesync", "run", config=config)
        dcctl("filesync", "verify", config=config)
        assert digest(standby_store) == digest(primary_store) == written
        for path in primary_store.glob("full-*.bin"):
            path.unlink()
        dcctl("--yes", "filesync", "run", "--allow-mass-delete", config=config)
    lab.owned_dir(standby_store, 0o755)
    dcctl("--yes", "filesync", "run", config=config)


def test_a_full_standby_wal_volume_is_crit_refuses_a_switchover_and_catches_up_when_space_returns(lab):
    config = str(lab.spec.config_path)
    wal = lab.spec.pgdata(STANDBY) / "pg_wal"
    volume = Path(lab.spec.dir) / "volumes" / "standby-wal"
    lab.stop(STANDBY)
    in_use = sum(p.stat().st_size for p in wal.rglob("*") if p.is_file())
    with small_volume(lab, volume, f"{in_use // 2**20 + 48}m"):  # room for three more segments
        for entry in wal.iterdir():
            shutil.move(str(entry), volume / entry.name)
        own_all(lab, volume)  # a move across file systems is a copy made by root
        wal.rmdir()
        wal.symlink_to(volume)
        os.lchown(wal, lab.user.pw_uid, lab.user.pw_gid)
        start_or_show_log(lab)
        lab.wait_streaming(STANDBY)

        acknowledged = fill_wal_until_the_standby_stops(lab, config)

        status, checks = check_json(config, "disk_free")
        assert status == 2
        assert any(c["status"] == "CRIT" and c["detail"].startswith("wal")
                   for c in results_named(checks, "disk_free", STANDBY)), checks
        assert "volume wal" in refused_switchover(config)
        assert status_json(config)["sites"][0]["role"] == "primary"

        grow(volume, "1g")
        lab.start(STANDBY)  # PostgreSQL restarts it after the PANIC; start it should it have given up
        lab.wait_streaming(STANDBY)
        with app_connect(lab, "rabat") as conn:
            target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        with app_connect(lab, STANDBY) as conn:
            wait_for(lambda: conn.execute("SELECT pg_last_wal_replay_lsn() >= %s", (target,)).fetchone()[0],
                     timeout=120, what="the standby replaying what the primary wrote")
            assert conn.execute("SELECT count(*) FROM disk_full").fetchone()[0] == acknowledged
        with app_connect(lab, "rabat") as conn:
            conn.execute("DROP TABLE disk_full")
            conn.execute("CHECKPOINT")
        lab.stop(STANDBY)
        wal.unlink()
        shutil.copytree(volume, wal)
        own_all(lab, wal)
    lab.start(STANDBY)
    lab.wait_streaming(STANDBY)


def own_all(lab: Lab, root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, lab.user.pw_uid, lab.user.pw_gid)


def start_or_show_log(lab: Lab) -> None:
    try:
        lab.start(STANDBY)
    except Exception:
        print(lab.spec.pg_log(STANDBY).read_text()[-3000:])
        raise


def fill_wal_until_the_standby_stops(lab: Lab, config: str) -> int:
    """Write WAL on the primary until the standby's WAL volume is full and its receiver stops;
    returns the number of committed rows."""
    committed = 0
    with app_connect(lab, "rabat") as conn:
        conn.execute("CREATE TABLE disk_full (id serial PRIMARY KEY, pad text)")
        conn.execute("ALTER TABLE disk_full ALTER pad SET STORAGE EXTERNAL")  # uncompressed: 64 kB of WAL a row
        while status_json(config)["sites"][1].get("streaming") is True:
            conn.execute("INSERT INTO disk_full (pad) SELECT repeat(md5(random()::text), 2000) "
                         "FROM generate_series(1, 50)")
            committed += 50
            assert committed < 4_000, "the standby kept streaming although its WAL volume should be full"
    return committed
