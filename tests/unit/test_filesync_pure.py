"""File sync's pure parts: direction, guard, rsync argv and parsers, manifests, pending set,
inotify event meanings, holding retention, the checks and the metric samples."""
import errno
import os
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from inotify_simple import flags

from dcctl.agent.metrics import METRICS
from dcctl.checks.catalog import Facts, run_checks
from dcctl.checks.result import Status
from dcctl.config.schema import Thresholds
from dcctl.agent.filesync_task import status_samples
from dcctl.filesync import holding, layout, manifest
from dcctl.filesync.decide import direction_from_view, guard, mass_delete_limit, push_decision
from dcctl.filesync.engine import deletion_dirs
from dcctl.filesync.rsync import (Job, SshTarget, Target, parse_created_dirs, parse_deletions, parse_stats, rsh_option,
                                  rsync_argv)
from dcctl.filesync.state import Receipt, RunRecord, StoreStatus, SyncStatus, reconciled_since
from dcctl.filesync.watch import (CREATED, GONE, MARK, MARK_TREE, MISSED, ROOT_GONE, UNWATCH_TREE, Pending, interpret,
                                  needs_push_at_create, watch_limit_problem)
from dcctl.model import DiskUsage, Generation
from tests.unit.views import NOW, primary, site, standby, view

T0 = NOW.timestamp()


# ---- which way files flow ------------------------------------------------------------------------

@pytest.mark.parametrize("own, peer, recorded, active, sentence", [
    (primary(), standby(), None, True, "rabat is the primary: pushing to backup"),
    (standby(), primary(), None, False, "rabat is a standby: backup pushes"),
    (primary(), primary(timeline=2), None, False, "rabat and backup both accept writes: not pushing (split brain?)"),
    (primary(timeline=1), None, Generation("massar", 2, "backup"), False,
     "rabat is a stale primary (timeline 1, but generation 2 belongs to backup): never pushing from it"),
    (primary(timeline=2), None, Generation("massar", 2, "rabat", ["backup"], "failover-x"), False,
     "backup was fenced by failover-x: files flow to it again after `dcctl rejoin --site backup`"),
    (primary(timeline=3), standby(timeline=3), Generation("massar", 3, "rabat", [], "rejoin-y"), True,
     "rabat is the primary: pushing to backup"),
    (None, standby(), None, False, "PostgreSQL at rabat did not answer (connection refused): not pushing"),
])
def test_push_decision_is_one_sentence_per_case(own, peer, recorded, active, sentence):
    decision = push_decision("rabat", "backup", own, "connection refused", peer, recorded)
    assert (decision.active, decision.reason) == (active, sentence)


def test_the_direction_an_operator_gets_follows_the_one_primary():
    assert direction_from_view(view(site("rabat", standby()), site("backup", primary()))) == \
        ("backup", "rabat", "backup is the primary")
    source, target, why = direction_from_view(view(site("rabat", primary()), site("backup", primary())))
    assert (source, target) == (None, None) and "both accept writes" in why
    assert direction_from_view(view(site("rabat", None, error="down"), site("backup", None, error="down")))[0] is None


# ---- the mass-deletion guard ----------------------------------------------------------------------

def test_guard_refuses_a_source_that_went_empty_and_allows_ordinary_deletes():
    assert not guard(100_000, 100_000, 0.10, 10).allowed
    assert guard(10_000, 100_000, 0.10, 10).allowed and not guard(10_001, 100_000, 0.10, 10).allowed
    assert guard(3, 4, 0.10, 10).allowed  # a tiny store: the floor, not the share
    assert not guard(5, 1000, 0.10, 10, already=96).allowed  # deletions add up between reconciliations
    assert guard(1000, 1000, 0.10, 10, allow=True).allowed
    assert mass_delete_limit(0, 0.5, 0) == 0 and not guard(1, 0, 0.1, 0).allowed


# ---- rsync -------------------------------------------------------------------------------------------

def ssh_target(**kw):
    values = dict(host="10.0.0.2", port=2222, user="postgres", known_hosts="/etc/dcctl/known hosts",
                  key_file="/etc/dcctl/id", connect_timeout=5, keepalive_interval=10, control_path="/s/c.sock",
                  control_persist=300)
    values.update(kw)
    return SshTarget(**values)


def test_every_run_keeps_owner_modes_times_links_acls_xattrs_and_holds_what_it_replaces():
    for mode in ("reconcile", "batch", "scoped"):
        argv = rsync_argv(Job(mode, "/srv/d", Target("/m/d"), "/st/holding/2026-11-24", "~1"))
        assert argv[1:3] == ["-aHAX", "--numeric-ids"]
        assert "--backup" in argv and "--backup-dir=/st/holding/2026-11-24" in argv and "--suffix=~1" in argv
        assert "--inplace" not in argv and "--delete-missing-args" not in argv
    reconcile = rsync_argv(Job("reconcile", "/srv/d", Target("/m/d"), "/h", "~1"))
    assert "--modify-window=-1" in reconcile and "--delete-delay" in reconcile
    batch = rsync_argv(Job("batch", "/srv/d", Target("/m/d"), "/h", "~1"))
    assert "--checksum" in batch and "--files-from=-" in batch and "--from0" in batch


def test_over_ssh_the_host_key_is_checked_and_one_connection_is_reused():
    argv = rsync_argv(Job("batch", "/srv/d", Target("/m/d", ssh_target(), "sudo -n rsync"), "/h", "~1"))
    rsh = argv[argv.index("-e") + 1]
    for option in ("BatchMode=yes", "StrictHostKeyChecking=yes", "ControlMaster=auto", "ControlPath=/s/c.sock",
                   "ControlPersist=300", "-p 2222", "-i /etc/dcctl/id", "'UserKnownHostsFile=/etc/dcctl/known hosts'"):
        assert option in rsh
    assert argv[-1] == "10.0.0.2:/m/d/" and "--rsync-path=sudo -n rsync" in argv and argv[:3] == ["sudo", "-n", "rsync"]
    with pytest.raises(ValueError):
        rsh_option(["ssh", "-i", "it's \"odd\""])


def test_stats_and_listings_are_parsed_from_rsync_output():
    out = ("deleting a/b\\#012c\ncd+++++++++ new dir/\nNumber of files: 12 (reg: 10, dir: 2)\n"
           "Number of created files: 3 (reg: 2, dir: 1)\nNumber of deleted files: 1 (reg: 1)\n"
           "Number of regular files transferred: 2\nTotal file size: 1,000 bytes\n"
           "Total transferred file size: 200 bytes\n")
    stats = parse_stats(out)
    assert (stats.entries, stats.created, stats.deleted, stats.files_transferred, stats.bytes_transferred) == \
        (12, 3, 1, 2, 200)
    assert stats.receiver_entries == 10
    assert parse_deletions(out) == ["a/b\nc"]
    assert parse_created_dirs(out) == ["new dir"]


def test_deletions_go_by_the_nearest_directory_still_at_the_source():
    present = {b"docs", b"docs/2026"}
    assert deletion_dirs([b"docs/2026/x.pdf", b"docs/old/y.pdf", b"gone"], present.__contains__) == \
        [b"", b"docs", b"docs/2026"]


# ---- manifests ------------------------------------------------------------------------------------

def test_manifests_compare_what_matters_and_not_directory_mtimes():
    f = manifest.Entry("f", 5, 1_000_000_001, "644", 26, 26)
    d = manifest.Entry("d", 4096, 7, "755", 26, 26)
    a = {".": d, "x": f, "same": f}
    b = {".": replace(d, mtime_ns=99), "x": replace(f, mtime_ns=1_000_000_002, uid=0), "same": f,
         "extra": replace(f, kind="l", link="x")}
    found = {diff.path: diff.what for diff in manifest.compare(a, b, "rabat", "backup")}
    assert found == {"x": "mtime 1000000001 ns at rabat, 1000000002 ns at backup; owner 26 at rabat, 0 at backup",
                     "extra": "only at backup (symlink)"}
    hashed = manifest.compare({"x": replace(f, sha256="aa")}, {"x": replace(f, sha256="bb")}, "a", "b")
    assert [d.what for d in hashed] == ["sha256 aa at a, bb at b"]


def test_names_with_any_character_survive_the_manifest():
    names = ["ملف عربي.pdf", "a b", "new\nline", "tab\there"]
    out = "".join("\0".join(["f", str(i), f"{i}.5", "644", "1", "1", "", f"/s/{n}"]) + "\0"
                  for i, n in enumerate(names))
    assert sorted(manifest.parse(out, "/s")) == sorted(names)


# ---- the pending set and inotify events ----------------------------------------------------------

def test_pending_keeps_the_first_time_and_a_failed_batch_goes_back_first():
    p = Pending()
    for path, when in ((b"a", 1.0), (b"b", 2.0), (b"c", 3.0), (b"a", 4.0)):
        p.add(path, when)
    taken = p.take(2)
    assert [t[0] for t in taken] == [b"a", b"b"] and taken[0][1:] == (1.0, 4.0)
    p.add(b"a", 5.0)
    p.put_back(taken)
    assert p.oldest() == 1.0 and [t[0] for t in p.take(10)] == [b"a", b"b", b"c"]


@pytest.mark.parametrize("mask, root, action", [
    (flags.CLOSE_WRITE, False, MARK), (flags.ATTRIB, False, MARK), (flags.DELETE, False, MARK),
    (flags.MOVED_FROM, False, MARK), (flags.MOVED_TO, False, MARK), (flags.CREATE, False, CREATED),
    (flags.CREATE | flags.ISDIR, False, MARK_TREE), (flags.MOVED_TO | flags.ISDIR, False, MARK_TREE),
    (flags.MOVED_FROM | flags.ISDIR, False, UNWATCH_TREE), (flags.DELETE | flags.ISDIR, False, MARK),
    (flags.Q_OVERFLOW, False, MISSED), (flags.UNMOUNT, False, MISSED), (flags.IGNORED, False, GONE),
    (flags.DELETE_SELF, True, ROOT_GONE), (flags.MOVE_SELF, True, ROOT_GONE),
])
def test_each_inotify_event_has_one_meaning(mask, root, action):
    assert interpret(mask, root) == action


def test_a_created_file_waits_for_its_close_unless_it_never_gets_one(tmp_path):
    regular = tmp_path / "f"
    regular.write_text("x")
    assert not needs_push_at_create(os.lstat(regular))
    os.symlink("f", tmp_path / "link")
    assert needs_push_at_create(os.lstat(tmp_path / "link"))
    os.link(regular, tmp_path / "hard")
    assert needs_push_at_create(os.lstat(tmp_path / "hard"))


def test_the_watch_limit_names_the_sysctl_to_raise():
    text = watch_limit_problem(OSError(errno.ENOSPC, "No space left on device"), 8190,
                               {"max_user_watches": "8192"}.get)
    assert "fs.inotify.max_user_watches = 8192" in text and "sysctl -w fs.inotify.max_user_watches=524288" in text
    assert "max_user_instances" in watch_limit_problem(OSError(errno.EMFILE, "x"), 0, {"max_user_instances": "128"}.get)


# ---- holding area, records -------------------------------------------------------------------------

def test_holding_days_expire_after_the_retention_and_nothing_else_is_touched():
    now = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
    assert holding.expired_days(["2026-10-24", "2026-10-23", "2026-10-25", "keep-me", "2026-13-01"], now, 30) == \
        ["2026-10-23", "2026-10-24"]  # 2026-10-24 ended more than 30 days before noon of 2026-11-24
    when = datetime(2026, 11, 24, 23, 59, 59, 999999, tzinfo=timezone.utc)
    assert layout.holding_dir("/st", "s", "d", when).endswith("/2026-11-24") and layout.holding_suffix(when) == \
        "~235959.999999"


def test_records_round_trip_and_the_last_reconciliation_is_the_newest_of_agent_and_operator():
    status = SyncStatus("massar", "rabat", "backup", True, "x", T0, 1, T0,
                        {"documents": StoreStatus("documents", "/s", "backup:/m", last_reconcile_started_at=T0 - 50)})
    run = RunRecord("massar", "documents", "rabat", T0 - 10, T0 - 9, "ok", "", "dcctl filesync run", T0 - 10)
    assert SyncStatus.from_json(status.to_json()) == status and RunRecord.from_json(run.to_json()) == run
    assert Receipt.from_json(Receipt("massar", "documents", "rabat", T0, T0 - 1).to_json()).synced_through == T0 - 1
    assert reconciled_since(status, run, "documents") == T0 - 10
    assert reconciled_since(status, None, "documents") == T0 - 50 and reconciled_since(None, None, "documents") is None


# ---- checks and metrics ---------------------------------------------------------------------------

def store_disk():
    return (DiskUsage("data", "/pg", 1000, 500), DiskUsage("store:documents", "/srv/d", 1000, 500))


def facts(store: StoreStatus | None = None, *, updated=T0, active=True, decision="rabat is the primary: pushing",
          disks=None):
    status = None
    if store is not False:
        status = SyncStatus("massar", "rabat", "backup", active, decision, updated, 1, T0 - 100,
                            {"documents": store} if store else {})
    rabat = replace(site("rabat", primary(), disks=store_disk() if disks is None else disks), filesync=status)
    return Facts(view(rabat, site("backup", standby(), disks=store_disk() if disks is None else disks)),
                 Thresholds(), now=T0)


def named(results, name):
    return [r for r in results if r.name == name]


def test_filesync_checks_grade_lag_backlog_and_reconciliation_age():
    healthy = StoreStatus("documents", "/s", "backup:/m", pending=2, oldest_pending_at=T0 - 5,
                          last_reconcile_finished_at=T0 - 100)
    results = run_checks(facts(healthy), ["filesync"])
    assert {r.name: r.status for r in results} == {"filesync_lag": Status.OK, "filesync_backlog": Status.OK,
                                                    "filesync_reconcile_age": Status.OK}
    late = replace(healthy, oldest_pending_at=T0 - 700, pending=200_000, last_reconcile_finished_at=T0 - 4000)
    results = run_checks(facts(late), ["filesync"])
    assert {r.name: r.status for r in results} == {"filesync_lag": Status.CRIT, "filesync_backlog": Status.CRIT,
                                                    "filesync_reconcile_age": Status.WARN}


def test_a_refused_mass_deletion_is_critical_until_an_operator_acts():
    blocked = StoreStatus("documents", "/s", "backup:/m", blocked="would delete 900 of 1000 entries ...")
    lag = named(run_checks(facts(blocked), ["filesync"]), "filesync_lag")
    assert lag[0].status is Status.CRIT and "would delete 900" in lag[0].detail


def test_a_silent_agent_or_a_paused_sync_is_reported_and_no_stores_means_no_result():
    assert named(run_checks(facts(StoreStatus("documents", "/s", "m"), updated=T0 - 120), ["filesync"]),
                 "filesync_lag")[0].status is Status.CRIT
    paused = run_checks(facts(StoreStatus("documents", "/s", "m"), active=False, decision="backup was fenced"),
                        ["filesync"])
    assert paused[0].status is Status.WARN and "paused: backup was fenced" in paused[0].detail
    assert run_checks(facts(False), ["filesync"])[0].status is Status.UNKNOWN  # stores but no status: agent?
    assert run_checks(facts(False, disks=(DiskUsage("data", "/pg", 1000, 500),)), ["filesync"]) == []


def test_every_filesync_sample_is_a_declared_metric():
    store = StoreStatus("documents", "/s", "backup:/m", pending=1, oldest_pending_at=T0 - 2, last_batch_at=T0,
                        last_reconcile_finished_at=T0, synced_through=T0 - 3, errors_total={"rsync": 2},
                        reconciles_total={"agent start": 1}, blocked="x")
    samples = status_samples(SyncStatus("massar", "rabat", "backup", True, "x", T0, 1, T0, {"documents": store}), T0)
    assert {s.name for s in samples} == {name for name in METRICS if name.startswith("dcctl_filesync_")
                                         and "_holding_" not in name}  # the holding collector's (agent/holding.py)
    lag = next(s for s in samples if s.name == "dcctl_filesync_lag_seconds")
    assert lag.value == 2 and lag.labels == {"service": "massar", "site": "rabat", "store": "documents"}
