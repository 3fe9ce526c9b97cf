"""Continuous file sync on the lab, over each transport: real agents, real inotify, real rsync
(and real sshd). Each test works in its own folder of the store; stores are compared with
os.walk and SHA-256, independently of dcctl's own manifests."""
import json
import os

import pytest

from tests.integration.conftest import dcctl, wait_for
from tests.integration.filesync_helpers import (agent_config, held, mkdirs, pushing, snapshot, start_agents, store,
                                                wait_same, write)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def agents(lab):
    config = agent_config(lab, "dcctl-filesync.yaml")
    running = start_agents(config, lab)
    try:
        wait_for(lambda: pushing(lab, "rabat"), timeout=30, what="the rabat agent pushing")
        yield config
    finally:
        for agent in running.values():
            agent.stop()
            print(f"--- agent {agent.site} log:\n" + "\n".join(agent.log_text().splitlines()[-30:]))


def test_create_modify_delete_rename_reach_the_standby(lab, agents):
    write(lab, "rabat", "crud/a.txt", "first")
    write(lab, "rabat", "crud/b.txt", "bee")
    write(lab, "rabat", "crud/dir/c.txt", "sea")
    wait_same(lab, "crud")
    write(lab, "rabat", "crud/a.txt", "second, longer")
    os.rename(store(lab, "rabat") / "crud/b.txt", store(lab, "rabat") / "crud/b2.txt")
    os.rename(store(lab, "rabat") / "crud/dir", store(lab, "rabat") / "crud/dir2")
    os.unlink(store(lab, "rabat") / "crud/dir2/c.txt")
    write(lab, "rabat", "crud/dir2/d.txt", "dee")
    wait_same(lab, "crud")
    assert sorted(snapshot(store(lab, "backup"), "crud")) == ["crud/a.txt", "crud/b2.txt", "crud/dir2",
                                                              "crud/dir2/d.txt"]
    assert [p.read_text() for p in held(lab, "crud/b.txt")] == ["bee"]  # a rename is never a loss either
    assert [p.read_text() for p in held(lab, "crud/a.txt")] == ["first"]


def test_names_in_any_script_with_spaces_and_newlines(lab, agents):
    names = ["أسماء/تقرير سنوي 2026.pdf", "أسماء/ملف جديد/وثيقة.txt", "names/with space.txt", "names/line\nbreak.txt",
             "names/café é.txt", "names/-dash", "names/back\\slash"]
    for index, name in enumerate(names):
        write(lab, "rabat", name, f"content {index}")
    wait_same(lab, "names")
    wait_same(lab, "أسماء")
    os.unlink(store(lab, "rabat") / "names/line\nbreak.txt")
    wait_same(lab, "names")


def test_permissions_owner_and_nanosecond_mtimes_are_kept(lab, agents):
    path = write(lab, "rabat", "perms/secret.pdf", "scan", mode=0o640)
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_123_456_789))
    mkdirs(lab, "rabat", "perms/private")
    os.chmod(store(lab, "rabat") / "perms/private", 0o750)
    os.symlink("../perms/secret.pdf", store(lab, "rabat") / "perms/link.pdf")
    os.lchown(store(lab, "rabat") / "perms/link.pdf", *os.stat(path)[4:6])
    wait_same(lab, "perms")
    copy = os.stat(store(lab, "backup") / "perms/secret.pdf")
    assert copy.st_mtime_ns == 1_000_000_123_456_789 and copy.st_mode & 0o777 == 0o640
    os.chmod(path, 0o600)  # an attribute change alone is pushed too
    wait_same(lab, "perms")


def test_replaced_and_deleted_files_land_in_the_holding_area(lab, agents):
    write(lab, "rabat", "hold/report.pdf", "version 1")
    write(lab, "rabat", "hold/gone.pdf", "deleted on the primary")
    wait_same(lab, "hold")
    write(lab, "rabat", "hold/report.pdf", "version 2!")
    os.unlink(store(lab, "rabat") / "hold/gone.pdf")
    wait_same(lab, "hold")
    assert not (store(lab, "backup") / "hold/gone.pdf").exists()
    assert [p.read_text() for p in held(lab, "hold/gone.pdf")] == ["deleted on the primary"]
    assert [p.read_text() for p in held(lab, "hold/report.pdf")] == ["version 1"]
    assert not (store(lab, "backup") / "hold").joinpath("report.pdf~").exists()  # held outside the store


def test_a_same_size_rewrite_in_the_same_clock_tick_is_not_lost(lab, agents):
    """lsyncd lost 20 of 20 such rewrites (rsync's one-second quick check); here the second version
    even gets the first one's exact nanosecond mtime, so only content can tell them apart."""
    path = store(lab, "rabat") / "tick" / "doc.txt"
    for round_ in range(20):
        first = f"A{round_:03d}".encode()
        write(lab, "rabat", "tick/doc.txt", first)
        wait_for(lambda: (store(lab, "backup") / "tick/doc.txt").exists() and
                 (store(lab, "backup") / "tick/doc.txt").read_bytes() == first, timeout=30, interval=0.01,
                 what=f"round {round_}: first version")
        stamp = os.stat(path).st_mtime_ns
        write(lab, "rabat", "tick/doc.txt", f"B{round_:03d}".encode())
        os.utime(path, ns=(stamp, stamp))
        wait_same(lab, "tick", timeout=30)


def test_an_empty_directory_tree_arrives(lab, agents):
    for relative in ("tree/a/b/c/d", "tree/e/f", "tree/g"):
        mkdirs(lab, "rabat", relative)
    wait_same(lab, "tree")
    assert (store(lab, "backup") / "tree/a/b/c/d").is_dir()


def test_ten_thousand_small_files_and_a_200_mb_file(lab, agents):
    for index in range(10_000):
        write(lab, "rabat", f"many/{index // 500:02d}/{index:05d}.txt", os.urandom(1 + index % 2000))
    big = write(lab, "rabat", "big/scan.tiff", b"")
    with open(big, "wb") as fh:
        for _ in range(200):
            fh.write(os.urandom(1 << 20))
    wait_same(lab, "many", timeout=180)
    wait_same(lab, "big", timeout=180)
    assert os.path.getsize(store(lab, "backup") / "big/scan.tiff") == 200 << 20


def test_status_verify_and_an_operator_run(lab, agents):
    write(lab, "rabat", "cli/x.txt", "x")
    wait_same(lab, "cli")
    report = json.loads(dcctl("filesync", "status", "-o", "json", config=agents).stdout)["services"][0]
    entry = report["stores"][0]
    assert report["source"] == "rabat" and entry["agent"] == "pushing" and entry["blocked"] is None
    assert entry["synced_through"] is not None and entry["lag_seconds"] < 60

    wait_for(lambda: dcctl("filesync", "verify", "--checksum", config=agents, check=False).returncode == 0,
             timeout=30, what="verify clean")
    write(lab, "backup", "cli/only-on-the-standby.txt", "stray")  # no event at rabat: only a reconciliation sees it
    found = dcctl("filesync", "verify", "-o", "json", config=agents, check=False)
    assert found.returncode == 1
    assert {d["path"] for d in json.loads(found.stdout)["stores"][0]["differences"]} == {
        "cli/only-on-the-standby.txt"}
    ran = dcctl("--yes", "filesync", "run", config=agents)
    assert "1 to delete" in ran.stderr and "Traceback" not in ran.stderr
    assert dcctl("filesync", "verify", config=agents, check=False).returncode == 0
    assert [p.read_text() for p in held(lab, "cli/only-on-the-standby.txt")] == ["stray"]
    checks = json.loads(dcctl("check", "--check", "filesync", "-o", "json", config=agents,
                              check=False).stdout)["services"][0]["checks"]
    assert {c["name"]: c["status"] for c in checks} == {"filesync_lag": "OK", "filesync_backlog": "OK",
                                                        "filesync_reconcile_age": "OK"}
