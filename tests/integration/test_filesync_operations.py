"""File stores in the operations, on the lab: a switchover pushes the last changes while writes
are stopped, verifies them, and the direction reverses; a failover states the last sync time;
a rejoin quarantines (and lists) what the old primary got after that, then follows the new primary."""
import json
from pathlib import Path

import pytest

from tests.integration.conftest import dcctl, wait_for
from tests.integration.filesync_helpers import (agent_config, pushing, snapshot, start_agents, store, wait_same,
                                                write)

pytestmark = pytest.mark.lab


def test_switchover_syncs_the_last_changes_and_the_new_primary_pushes_back(ssh_lab):
    lab = ssh_lab
    config = agent_config(lab, "dcctl-switch.yaml")
    agents = start_agents(config, lab)
    try:
        wait_for(lambda: pushing(lab, "rabat"), timeout=30, what="rabat pushing")
        write(lab, "rabat", "switch/before.txt", "pushed by the agent")
        wait_same(lab, "switch")
        agents["rabat"].stop()  # so that only the switchover's final sync can carry the next change
        write(lab, "rabat", "switch/last-minute.txt", "written just before the switchover")

        report = json.loads(dcctl("--yes", "-o", "json", "switchover", config=config).stdout)
        assert report["outcome"] == "success" and report["new_primary"] == "backup"
        final = report["observed"]["final_file_sync"]["documents"]
        assert final["verified"] == "identical" and final["files_sent"] >= 1
        assert "since" in final["scope"]
        assert (store(lab, "backup") / "switch/last-minute.txt").read_text() == "written just before the switchover"

        agents["rabat"].start()
        wait_for(lambda: pushing(lab, "backup") and not pushing(lab, "rabat"), timeout=60,
                 what="backup pushing, rabat not")
        write(lab, "backup", "switch/after.txt", "written on the new primary")
        wait_same(lab, "switch", source="backup", target="rabat")
        status = json.loads(dcctl("filesync", "status", "-o", "json", config=config).stdout)["services"][0]
        assert (status["source"], status["target"]) == ("backup", "rabat")
    finally:
        for agent in agents.values():
            agent.stop()


def test_failover_states_the_last_sync_and_rejoin_quarantines_what_came_after(local_lab):
    lab = local_lab
    config = str(lab.spec.config_path)
    write(lab, "rabat", "q/synced.txt", "version the standby has")
    write(lab, "rabat", "q/untouched.txt", "same on both")
    dcctl("--yes", "filesync", "run", config=config)

    failover = json.loads(dcctl("--yes", "-o", "json", "failover", config=config).stdout)
    assert failover["outcome"] == "success" and failover["new_primary"] == "backup"
    assert failover["observed"]["files_synced_through"]["documents"]
    assert "may not have reached backup" in failover["observed"]["file_sync_verdict"]

    # The fenced old primary's application kept writing files; the new primary got its own.
    write(lab, "rabat", "q/synced.txt", "changed at rabat after the failover")
    write(lab, "rabat", "q/late.txt", "new at rabat after the failover")
    write(lab, "backup", "q/on-new.txt", "written at the new primary")

    rejoin = json.loads(dcctl("--yes", "-o", "json", "rejoin", "--site", "rabat", config=config).stdout)
    assert rejoin["outcome"] == "success"
    quarantined = rejoin["observed"]["quarantined_files"]["documents"]
    assert quarantined["files"] == ["q/late.txt", "q/synced.txt"] and quarantined["count"] == 2
    folder = Path(quarantined["directory"].split(":", 1)[1])
    assert (folder / "q/synced.txt").read_text() == "changed at rabat after the failover"
    assert (folder / "q/late.txt").read_text() == "new at rabat after the failover"
    assert "2 file(s) written at rabat after the last sync" in rejoin["observed"]["quarantine_verdict"]

    # Then the old primary's store follows the new primary.
    assert snapshot(store(lab, "rabat"), "q") == snapshot(store(lab, "backup"), "q")
    assert (store(lab, "rabat") / "q/synced.txt").read_text() == "version the standby has"
    assert not (store(lab, "rabat") / "q/late.txt").exists()
    wait_same(lab, source="backup", target="rabat")
