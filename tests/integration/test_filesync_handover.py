"""A switchover hands file sync over from one agent to the other, never to both at once.

The old primary's agent learns the roles changed only at its next role check. Until then it
still watches its store, where the new primary's agent is already putting files; pushing from
there would delete, at the new primary, what was written since. The switchover stops it first."""
import json
import time

import pytest

from tests.integration.conftest import dcctl, wait_for
from tests.integration.filesync_helpers import (agent_config, held, pushing, start_agents, store, wait_same,
                                                write)
from dcctl.agent.filesync_task import own_transport
from dcctl.config import load_config
from dcctl.filesync.engine import HandedOver, StorePair
from dcctl.lab.agents import AgentProcess

pytestmark = pytest.mark.lab


def test_the_old_primarys_agent_stops_pushing_before_the_new_primary_takes_writes(local_lab):
    lab = local_lab
    slow = agent_config(lab, "dcctl-slow-roles.yaml", role_check_interval=120)  # rabat notices nothing for 2 min
    quick = agent_config(lab, "dcctl-quick-roles.yaml")
    agents = {"rabat": AgentProcess(slow, "rabat", lab.spec.root / "agent-rabat.log").start(),
              "backup": AgentProcess(quick, "backup", lab.spec.root / "agent-backup.log").start()}
    try:
        wait_for(lambda: pushing(lab, "rabat"), timeout=30, what="rabat pushing")
        write(lab, "rabat", "receipts/first.pdf", "written at rabat")
        wait_same(lab, "receipts")

        report = json.loads(dcctl("--yes", "-o", "json", "switchover", config=quick).stdout)
        assert report["outcome"] == "success" and report["new_primary"] == "backup"
        written = {}
        deadline = time.monotonic() + 4  # the new primary's agent starts pushing meanwhile
        n = 0
        while time.monotonic() < deadline:
            name = f"receipts/after-{n:04d}.pdf"
            write(lab, "backup", name, f"receipt {n} written at the new primary")
            written[name] = f"receipt {n} written at the new primary"
            n += 1
            time.sleep(0.02)
        assert pushing(lab, "backup")

        wait_same(lab, "receipts", source="backup", target="rabat")
        for name, content in written.items():
            assert (store(lab, "backup") / name).read_text() == content, f"{name} lost at backup"
            assert not held(lab, name, site="backup"), f"{name} was deleted at backup by rabat's agent"
    finally:
        for agent in agents.values():
            agent.stop()
    # back to how the module found it: rabat the primary
    dcctl("--yes", "switchover", "--to", "rabat", config=quick)


def pushing_pair(lab, timeline: int | None) -> StorePair:
    service = load_config(lab.spec.config_path).services["massar"]
    sites = service.sites
    return StorePair("massar", "documents", "rabat", "backup", sites["rabat"], sites["backup"], service.filesync,
                     own_transport("rabat", sites["rabat"]), own_transport("backup", sites["backup"]), "test",
                     pushing_timeline=timeline)


def test_a_push_from_a_site_that_handed_over_is_refused_until_it_is_primary_on_a_newer_timeline(local_lab):
    lab = local_lab
    write(lab, "rabat", "guard/one.pdf", "at rabat")
    operator = pushing_pair(lab, None)
    operator.hand_over(5, "20261205T000000Z-switchover-test", wait=5)
    try:
        with pytest.raises(HandedOver, match="handed over to backup by 20261205T000000Z-switchover-test"):
            pushing_pair(lab, 5).reconcile(pushing_pair(lab, 5).preview())
        assert not (store(lab, "backup") / "guard/one.pdf").exists()
        with pytest.raises(HandedOver):
            pushing_pair(lab, 4).batch([b"guard/one.pdf"], [], deletions_allowed=True, receiver_entries=10,
                                       already_deleted=0)
        assert not (store(lab, "backup") / "guard/one.pdf").exists()

        pushing_pair(lab, 6).batch([b"guard", b"guard/one.pdf"], [], deletions_allowed=True, receiver_entries=10,
                                   already_deleted=0)  # promoted again since: timeline 6
        assert (store(lab, "backup") / "guard/one.pdf").read_text() == "at rabat"
        operator.reconcile(operator.preview())  # an operator's or an operation's own sync is not held back
    finally:
        operator.take_back()
    pushing_pair(lab, 5).reconcile(pushing_pair(lab, 5).preview())  # the mark removed: pushing again
