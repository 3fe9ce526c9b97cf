"""File sync when things go wrong, on the lab: the inotify queue overflows (for real, by holding
the reader), the agent is killed with SIGKILL in the middle of a batch, and the source store
suddenly looks empty (the mass-deletion guard)."""
import json
import os
import shutil
import signal
import time

import pytest

from dcctl.config import load_config
from dcctl.filesync.engine import StorePair
from dcctl.filesync.state import StoreStatus
from dcctl.agent.filesync_task import StoreSyncer, own_transport
from tests.integration.conftest import check_json, dcctl, results_named, wait_for
from tests.integration.filesync_helpers import (agent_config, held, mkdirs, owner, pushing, snapshot, start_agents,
                                                store, wait_same, write)

pytestmark = pytest.mark.lab


def syncer_for(lab, config_path: str) -> StoreSyncer:
    config = load_config(config_path)
    service = config.services["massar"]
    sites = service.sites
    pair = StorePair("massar", "documents", "rabat", "backup", sites["rabat"], sites["backup"], service.filesync,
                     own_transport("rabat", sites["rabat"]), own_transport("backup", sites["backup"]), "test")
    return StoreSyncer(pair, StoreStatus("documents", pair.source_dir, pair.target_dir))


def test_an_inotify_queue_overflow_leads_to_a_full_reconciliation(local_lab):
    lab = local_lab
    syncer = syncer_for(lab, agent_config(lab, "dcctl-overflow.yaml"))
    syncer.start()
    try:
        wait_for(lambda: syncer.status.last_reconcile_finished_at, timeout=30, what="the first reconciliation")
        syncer.watcher.pause()
        limit = int(open("/proc/sys/fs/inotify/max_queued_events").read())
        mkdirs(lab, "rabat", "flood")
        count = limit // 2 + 1000  # create, close_write and attrib (chown) each: well past the queue
        for index in range(count):
            write(lab, "rabat", f"flood/{index:05d}", str(index))
        syncer.watcher.resume()
        reason = "inotify queue overflow (events were dropped)"
        wait_for(lambda: syncer.status.reconciles_total.get(reason), timeout=60, what="a reconciliation after overflow")
        assert syncer.status.errors_total.get("missed_events", 0) >= 1
        wait_same(lab, "flood", timeout=60)
        assert len(snapshot(store(lab, "backup"), "flood")) == count
    finally:
        syncer.stop(10)


def test_kill_9_in_the_middle_of_a_batch_then_a_restart_leaves_no_difference(local_lab):
    lab = local_lab
    config = agent_config(lab, "dcctl-kill.yaml")
    agents = start_agents(config, lab, sites=("rabat",))
    agent = agents["rabat"]
    try:
        wait_for(lambda: pushing(lab, "rabat"), timeout=30, what="rabat pushing")
        # Written beside the store, then moved in at once: the agent has 1515 entries to push
        # however fast the files were written, and is caught half-way.
        staging = store(lab, "rabat").parent / "kill-staging"
        uid, gid = owner(lab)
        for index in range(1500):
            path = staging / f"{index // 100:02d}" / f"{index:04d}.bin"
            if not path.parent.exists():
                path.parent.mkdir(parents=True)
                os.chown(path.parent, uid, gid)
            path.write_bytes(os.urandom(64 * 1024))
            os.chown(path, uid, gid)
        os.chown(staging, uid, gid)
        staging.rename(store(lab, "rabat") / "kill")

        def mid_batch():
            there = sum(len(dirs) + len(files) for _, dirs, files in os.walk(store(lab, "backup") / "kill"))
            return 0 < there < 1515 and there

        wait_for(mid_batch, timeout=60, interval=0.005, what="part of the files on the standby")
        assert agent.stop(signal.SIGKILL) == -signal.SIGKILL
        # While no agent watches: more files, a deletion, a change.
        for index in range(1500, 1550):
            write(lab, "rabat", f"kill/late/{index}.bin", os.urandom(1000))
        os.unlink(store(lab, "rabat") / "kill/00/0000.bin")
        write(lab, "rabat", "kill/00/0001.bin", b"changed while no agent ran")
        agent.start()
        wait_same(lab, "kill", timeout=120)
        wait_for(lambda: dcctl("filesync", "verify", config=config, check=False).returncode == 0, timeout=60,
                 what="dcctl filesync verify clean")
        leftovers = [p for p in (store(lab, "backup") / "kill").rglob(".*")]
        assert leftovers == []  # rsync's temporary files of the killed batch are gone too
    finally:
        agent.stop()


def test_a_source_that_suddenly_looks_empty_is_refused_and_fails_the_check(local_lab):
    lab = local_lab
    config = agent_config(lab, "dcctl-guard.yaml")
    agents = start_agents(config, lab, sites=("rabat",))
    try:
        wait_for(lambda: pushing(lab, "rabat"), timeout=30, what="rabat pushing")
        for index in range(300):
            write(lab, "rabat", f"guard/{index // 50}/{index}.pdf", f"scan {index}")
        wait_same(lab, timeout=60)
        standby_before = snapshot(store(lab, "backup"))

        # The volume "goes away": everything in the store vanishes at once (moved aside here).
        aside = lab.spec.root / "store-aside"
        aside.mkdir()
        for entry in list(store(lab, "rabat").iterdir()):
            os.rename(entry, aside / entry.name)

        def blocked():
            code, checks = check_json(config, "filesync")
            lag = results_named(checks, "filesync_lag")
            return code == 2 and lag and lag[0]["status"] == "CRIT" and "refused" in lag[0]["detail"] and lag

        lag = wait_for(blocked, timeout=60, interval=0.3, what="the guard to refuse and the check to fail")
        assert "allow-mass-delete" in lag[0]["detail"]
        time.sleep(1)
        assert snapshot(store(lab, "backup")) == standby_before  # nothing was deleted on the standby

        refused = dcctl("--yes", "filesync", "run", config=config, check=False)
        assert refused.returncode == 5 and "REFUSED" in refused.stderr and "Traceback" not in refused.stderr
        status = json.loads(dcctl("filesync", "status", "-o", "json", config=config).stdout)["services"][0]
        assert status["stores"][0]["blocked"]

        # The volume is back: an operator run finds nothing to delete, and the agent resumes.
        for entry in list(aside.iterdir()):
            os.rename(entry, store(lab, "rabat") / entry.name)
        dcctl("--yes", "filesync", "run", config=config)
        wait_for(lambda: check_json(config, "filesync")[0] == 0, timeout=30, what="the check OK again")

        # A real mass deletion, wanted: only with --allow-mass-delete, and still kept in the holding area.
        for entry in store(lab, "rabat").iterdir():
            if entry.name != "guard":
                shutil.rmtree(entry)  # what earlier tests of this module left
        for index in range(0, 300, 2):
            os.unlink(store(lab, "rabat") / f"guard/{index // 50}/{index}.pdf")
        wait_for(blocked, timeout=60, interval=0.3, what="the guard to refuse the wanted deletion first")
        dcctl("--yes", "filesync", "run", "--allow-mass-delete", config=config)
        wait_same(lab, timeout=60)
        assert [p.read_text() for p in held(lab, "guard/0/0.pdf")] == ["scan 0"]
        wait_for(lambda: check_json(config, "filesync")[0] == 0, timeout=30, what="the check OK again")
    finally:
        for agent in agents.values():
            agent.stop()
