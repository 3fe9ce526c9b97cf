"""Files owned by another user in a file store (reliability item 13).

In the lab run as root, rsync runs as the transport user `postgres`, which cannot give a copy
another user's owner: with `owners: keep` (the default) the switchover's final verify finds the
owners differ and rolls back, and `dcctl config check` and the agent's start say so ahead of
time; with `owners: ignore` rsync leaves owners alone, verify does not compare them, and the
switchover succeeds.
"""
import json
import os
import pwd
from pathlib import Path

import pytest

from dcctl.lab.agents import AgentProcess
from tests.integration.conftest import config_variant, dcctl, local_lab, ssh_lab, status_json, wait_for  # noqa: F401

pytestmark = pytest.mark.lab


def primary_of(config: str) -> str:
    return next(s["site"] for s in status_json(config)["sites"] if s["role"] == "primary")


def wait_streaming(config: str) -> None:
    wait_for(lambda: [s["streaming"] for s in status_json(config)["sites"] if s["role"] == "standby"] == [True],
             timeout=60, what="the standby streaming")


def store_of(lab_, site: str) -> Path:
    return lab_.spec.root / "sites" / site / "files" / "documents"


def put_foreign_file(lab_):
    site = primary_of(str(lab_.spec.config_path))
    path = store_of(lab_, site) / "scan-owned-by-nobody.pdf"
    path.write_bytes(b"%PDF-1.4 scanned by another service\n")
    nobody = pwd.getpwnam("nobody")
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    path.chmod(0o644)
    return site, path


def remove_foreign_file(lab_, path: Path) -> None:
    for other in ("rabat", "backup"):
        (store_of(lab_, other) / path.name).unlink(missing_ok=True)


@pytest.fixture
def foreign_file(local_lab):
    """A file in the primary's store owned by nobody:nogroup; removed at both sites afterwards."""
    site, path = put_foreign_file(local_lab)
    yield site, path
    remove_foreign_file(local_lab, path)


def test_config_check_asks_the_receiver_over_ssh(ssh_lab):
    site, path = put_foreign_file(ssh_lab)
    try:
        checked = dcctl("config", "check", config=str(ssh_lab.spec.config_path))
        assert f"store documents: {site}:{path} is owned by nobody:nogroup" in checked.stderr
        assert "not root" in checked.stderr and "filesync.stores.documents.owners: ignore" in checked.stderr
        assert "warning" not in dcctl("config", "check", config=ignoring(ssh_lab)).stderr
    finally:
        remove_foreign_file(ssh_lab, path)


def ignoring(lab_) -> str:
    def edit(data):
        data["services"]["massar"]["filesync"] = {"stores": {"documents": {"owners": "ignore"}}}
    return config_variant(lab_, "owners-ignore", edit)


def test_keep_with_a_non_root_receiver_is_announced_and_rolls_back(local_lab, foreign_file):
    site, path = foreign_file
    config = str(local_lab.spec.config_path)
    checked = dcctl("config", "check", config=config)
    warnings = [line for line in checked.stderr.splitlines() if line.startswith("dcctl: warning:")]
    assert len(warnings) == 1, checked.stderr
    assert (f"store documents: {site}:{path} is owned by nobody:nogroup, but rsync at" in warnings[0]
            and "runs as postgres, not root" in warnings[0]
            and "set filesync.stores.documents.owners: ignore" in warnings[0])

    result = dcctl("--yes", "switchover", config=config, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "'final_file_sync' failed" in result.stderr and f"{path.name}: owner" in result.stderr
    assert primary_of(config) == site
    wait_streaming(config)


def test_the_agent_says_so_when_it_starts(local_lab, foreign_file, tmp_path):
    site, path = foreign_file
    agent = AgentProcess(str(local_lab.spec.config_path), site, tmp_path / "agent.log")
    try:
        agent.start()
        wait_for(lambda: "filesync.stores.documents.owners: ignore" in agent.log_path.read_text(),
                 what="the agent's warning about owners")
        text = agent.log_path.read_text()
        assert f"{site}:{path} is owned by nobody:nogroup" in text and "WARNING" in text
    finally:
        assert agent.stop() == 0


def test_owners_ignore_switches_over_and_verifies(local_lab, foreign_file):
    site, path = foreign_file
    config = ignoring(local_lab)
    checked = dcctl("config", "check", config=config)
    assert "warning" not in checked.stderr
    wait_streaming(config)

    there = json.loads(dcctl("--yes", "-o", "json", "switchover", config=config).stdout)
    assert there["outcome"] == "success"
    other = there["new_primary"]
    copy = store_of(local_lab, other) / path.name
    assert copy.read_bytes() == path.read_bytes() and copy.stat().st_uid == pwd.getpwnam("postgres").pw_uid
    assert dcctl("filesync", "verify", config=config).returncode == 0
    # The owner is still compared where the store keeps owners: plain verify names it.
    kept = dcctl("filesync", "verify", config=str(local_lab.spec.config_path), check=False)
    assert kept.returncode == 1 and "owner" in kept.stdout

    wait_streaming(config)
    back = json.loads(dcctl("--yes", "-o", "json", "switchover", config=config).stdout)
    assert back["outcome"] == "success" and back["new_primary"] == site
