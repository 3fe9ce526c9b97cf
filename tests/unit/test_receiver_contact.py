"""The WAL receiver's last receipt (reliability item 11): the switchover preflight rule and the
receiver_contact check, over hand-built snapshots."""
from dataclasses import replace

import pytest

from dcctl.checks.catalog import Facts, run_checks
from dcctl.checks.result import Status
from dcctl.config.schema import LocalTransportConfig, OperationConfig, PostgresConfig, ServiceConfig, SiteConfig, \
    Thresholds
from dcctl.ops.preflight import switchover_refusals
from dcctl.pg.probe import node_status_from_row
from tests.unit.views import primary, site, standby, view


def service(max_receipt_age: float = 5.0) -> ServiceConfig:
    return ServiceConfig(sites={
        name: SiteConfig(transport=LocalTransportConfig(type="local"), postgres=PostgresConfig(data_dir=f"/pg/{name}"))
        for name in ("rabat", "backup")}, operation=OperationConfig(max_receipt_age=max_receipt_age))


def heard(age: float | None, **settings):
    return view(site("rabat", primary()), site("backup", replace(standby(**settings), receipt_age=age)))


def test_a_receiver_that_heard_recently_is_no_reason_to_refuse():
    assert switchover_refusals(heard(0.2), service(), "rabat", "backup") == []
    assert switchover_refusals(heard(None), service(), "rabat", "backup") == []


def test_a_silent_receiver_refuses_the_switchover_in_one_sentence():
    reasons = switchover_refusals(heard(42.25), service(), "rabat", "backup")
    assert reasons == ["standby backup: its WAL receiver last heard from the primary 42.2 s ago "
                       "(operation.max_receipt_age is 5 s): it may be hung, and the switchover would wait on it; "
                       "see pg_stat_wal_receiver (its pid) and the standby's log, or restart the standby"]


def test_max_receipt_age_zero_disables_the_rule():
    assert switchover_refusals(heard(600), service(0), "rabat", "backup") == []


@pytest.mark.parametrize("age, status", [(3, Status.OK), (34, Status.OK), (36, Status.WARN), (61, Status.CRIT)])
def test_receiver_contact_is_graded_on_wal_receiver_timeout(age, status):
    found = [r for r in run_checks(Facts(heard(age, wal_receiver_timeout="60000"), Thresholds()))
             if r.name == "receiver_contact"]
    assert [(r.site, r.status) for r in found] == [("backup", status)]
    assert "wal_receiver_timeout 60 s" in found[0].threshold


def test_receiver_contact_without_a_receiver_timeout_is_unknown():
    found = [r for r in run_checks(Facts(heard(100, wal_receiver_timeout="0"), Thresholds()))
             if r.name == "receiver_contact"]
    assert [r.status for r in found] == [Status.UNKNOWN]


def test_the_probe_keeps_the_receipt_age_of_a_standby_only():
    row = {"in_recovery": True, "received_timeline": 1, "checkpoint_timeline": 1, "primary_timeline": None,
           "current_lsn": None, "receive_lsn": "0/1", "replay_lsn": "0/1", "last_replay_at": None,
           "replay_paused": False, "server_now": None, "receiver_status": "streaming", "receiver_slot": "s",
           "upstream": "h:1", "server_version": 150000, "slots": None, "settings": None, "receipt_age": 1.5}
    assert node_status_from_row(row).receipt_age == 1.5
    assert node_status_from_row({**row, "in_recovery": False}).receipt_age is None
