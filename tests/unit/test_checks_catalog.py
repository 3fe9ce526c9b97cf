"""The checks as pure functions of a snapshot: each state and its sentence."""
from dataclasses import replace

import pytest

from dcctl.checks.catalog import Facts, run_checks
from dcctl.checks.result import CheckResult, Status, ordered, worst
from dcctl.config.schema import Thresholds
from dcctl.model import DiskUsage, SlotStatus
from tests.unit.views import healthy, primary, site, standby, view

T = Thresholds()


def results(v, name, **facts):
    return [r for r in run_checks(Facts(v, facts.pop("thresholds", T), **facts)) if r.name == name]


def test_healthy_is_ok_everywhere_but_the_drill():
    found = run_checks(Facts(healthy(), T))
    assert {r.name for r in found if r.status is not Status.OK} == {"drill_age"}
    assert worst(found) is Status.UNKNOWN


def test_worst_orders_crit_over_warn_over_unknown():
    mk = lambda s: CheckResult("x", s, "")  # noqa: E731
    assert worst([mk(Status.UNKNOWN), mk(Status.WARN)]) is Status.WARN
    assert worst([mk(Status.WARN), mk(Status.CRIT), mk(Status.OK)]) is Status.CRIT
    assert [r.status for r in ordered([mk(Status.OK), mk(Status.CRIT), mk(Status.UNKNOWN)])] == \
        [Status.CRIT, Status.UNKNOWN, Status.OK]


def test_two_primaries_is_split_brain():
    [r] = results(view(site("rabat", primary()), site("backup", primary())), "one_primary")
    assert r.status is Status.CRIT and "SPLIT BRAIN" in r.detail and "rabat and backup" in r.detail


def test_no_primary_names_the_silent_sites():
    [r] = results(view(site("rabat", None, error="refused"), site("backup", standby())), "one_primary")
    assert r.status is Status.CRIT and "rabat did not answer" in r.detail


def test_standby_down_is_crit_with_the_cause():
    [r] = results(view(site("rabat", primary()), site("backup", None, error="PostgreSQL at 10.0.0.2:5432 is "
                                                                             "unreachable: connection refused")),
                  "replication_streaming")
    assert r.status is Status.CRIT and r.site == "backup" and "connection refused" in r.detail


def test_standby_not_streaming():
    [r] = results(view(site("rabat", primary()), site("backup", standby(receiver=None))), "replication_streaming")
    assert r.status is Status.CRIT and "no WAL receiver" in r.detail


@pytest.mark.parametrize("behind_bytes, status", [(0, "OK"), (T.lag_bytes_warn, "WARN"), (T.lag_bytes_crit, "CRIT")])
def test_lag_bytes_grades(behind_bytes, status):
    replay = f"0/{0x5000000 - behind_bytes:X}"
    v = view(site("rabat", primary()), site("backup", standby(replay=replay, behind_seconds=1)))
    [r] = results(v, "replication_lag_bytes")
    assert r.status.name == status and r.value == behind_bytes


def test_lag_seconds_counts_only_while_behind_and_says_when_paused():
    v = view(site("rabat", primary()), site("backup", standby(replay="0/4000000", behind_seconds=400, paused=True)))
    [r] = results(v, "replication_lag_seconds")
    assert r.status is Status.CRIT and r.value == 400 and "replay is paused" in r.detail
    caught_up = view(site("rabat", primary()), site("backup", standby(behind_seconds=4000)))
    assert results(caught_up, "replication_lag_seconds")[0].value == 0


def test_lag_is_unknown_without_a_primary():
    v = view(site("rabat", None, error="down"), site("backup", standby()))
    assert {r.status for r in results(v, "replication_lag_bytes")} == {Status.UNKNOWN}



def test_lag_is_unknown_when_the_standby_reports_no_replay_position():
    """A probe that read no replay LSN (NULL) gives UNKNOWN, not a TypeError that stops every check."""
    v = view(site("rabat", primary()), site("backup", standby(replay=None)))
    [r] = results(v, "replication_lag_bytes")
    assert r.status is Status.UNKNOWN and "backup" in r.detail


def test_inactive_slot_retaining_wal_warns_and_says_how_to_drop_it():
    slots = (SlotStatus("dcctl_backup", True, "0/5000000", 0, "reserved"),
             SlotStatus("old", False, "0/1000000", 64 * 1024 * 1024, "reserved"))
    [ours, old] = results(view(site("rabat", primary(slots=slots)), site("backup", standby())), "replication_slots")
    assert ours.status is Status.OK
    assert old.status is Status.WARN and "pg_drop_replication_slot('old')" in old.detail


def test_missing_slot_of_the_standby_is_crit():
    [r] = results(view(site("rabat", primary(slots=())), site("backup", standby())), "replication_slots")
    assert r.status is Status.CRIT and "dcctl_backup does not exist" in r.detail


def test_timeline_mismatch_is_crit():
    [r] = results(view(site("rabat", primary(timeline=3)), site("backup", standby(timeline=2))), "timeline_consistent")
    assert r.status is Status.CRIT and "rejoin" in r.detail


def test_failover_readiness_without_hints_or_checksums():
    v = view(site("rabat", primary()), site("backup", standby(wal_log_hints="off", data_checksums="off")))
    by_site = {r.site: r for r in results(v, "failover_readiness")}
    assert by_site["rabat"].status is Status.OK
    assert by_site["backup"].status is Status.WARN and "wal_log_hints = on" in by_site["backup"].detail


def test_disk_free_grades_each_volume():
    disks = (DiskUsage("data", "/pg", 1000, 100), DiskUsage("wal", "/wal", 1000, 10),
             DiskUsage("store:documents", "/docs", None, None, error="No such file or directory"))
    v = view(site("rabat", primary(), disks=disks), site("backup", standby(), reachable=False))
    by_label = {(r.site, r.detail.split(":")[0]): r.status for r in results(v, "disk_free")}
    assert by_label[("rabat", "data")] is Status.WARN
    assert by_label[("rabat", "wal")] is Status.CRIT
    assert by_label[("rabat", "store")] is Status.UNKNOWN
    assert by_label[("backup", "site backup is unreachable")] is Status.UNKNOWN


def test_clock_skew():
    v = view(site("rabat", primary(offset=0.2)), site("backup", standby(offset=-1.3)))
    [r] = results(v, "clock_skew")
    assert r.status is Status.WARN and r.value == 1.5


def test_drill_age():
    assert results(healthy(), "drill_age")[0].status is Status.UNKNOWN
    day = 86400.0
    assert results(healthy(), "drill_age", last_drill_success=0.0, now=3 * day)[0].status is Status.OK
    assert results(healthy(), "drill_age", last_drill_success=0.0, now=9 * day)[0].status is Status.WARN


def test_unreachable_site_is_crit_with_its_cause():
    v = healthy()
    v = replace(v, sites=(v.sites[0], replace(v.sites[1], reachable=False,
                                               transport_error="cannot connect to postgres@10.0.0.2:22: refused")))
    by_site = {r.site: r for r in results(v, "site_reachable")}
    assert by_site["backup"].status is Status.CRIT and "10.0.0.2:22" in by_site["backup"].detail


def test_a_stale_primary_is_crit_with_what_to_do():
    from dcctl.model import Generation

    v = view(site("rabat", primary(timeline=3)), site("backup", primary(timeline=4)))
    [r] = results(v, "generation", recorded_generation=Generation("massar", 4, "backup", ["rabat"]))
    assert r.status is Status.CRIT and r.site == "rabat" and "dcctl rejoin --site rabat" in r.detail
    assert results(healthy(), "generation")[0].status is Status.OK
