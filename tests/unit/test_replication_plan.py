"""replication init planning: refusals list every reason; the plan never deletes data."""
from datetime import datetime, timezone

import pytest

from dcctl.config.schema import PostgresConfig
from dcctl.errors import RefusedError
from dcctl.pg.standby_conf import primary_conninfo, standby_settings, update_auto_conf
from dcctl.replication.init import BasebackupProgress, InitRequest, TargetState, choose_sites, plan_init
from tests.unit.views import primary, site, standby, view

NOW = datetime(2026, 11, 24, 5, 30, tzinfo=timezone.utc)
PRIMARY = PostgresConfig(data_dir="/pg/rabat", host="10.0.0.1")
STANDBY = PostgresConfig(data_dir="/pg/backup/", host="10.0.0.2", replication_passfile="/var/lib/postgresql/.pgpass")
EMPTY = TargetState(data_dir_exists=False, data_dir_empty=True, partial_exists=False, running=False,
                    free_bytes=10**12)


def request(force=False):
    return InitRequest("massar", "rabat", "backup", PRIMARY, STANDBY, force)


def test_fresh_site_gets_the_plain_plan():
    v = view(site("rabat", primary()), site("backup", None, error="refused"))
    plan = plan_init(request(), v, EMPTY, 10**9, NOW)
    assert plan.partial_dir == "/pg/backup.dcctl-partial"
    assert plan.aside_dir is None and not plan.stop_first and not plan.remove_partial
    assert plan.slot == "dcctl_backup"


def test_refusals_are_listed_together():
    v = view(site("rabat", primary()), site("backup", None, error="refused"))
    busy = TargetState(True, False, False, True, 100)
    with pytest.raises(RefusedError) as caught:
        plan_init(request(), v, busy, 10**9, NOW)
    text = caught.value.message
    assert "/pg/backup at site backup is not empty" in text and "dcctl-aside-20261124T053000Z" in text
    assert "PostgreSQL is running at site backup" in text
    assert "bytes free" in text


def test_force_moves_aside_and_stops_but_never_deletes():
    v = view(site("rabat", primary()), site("backup", standby(receiver=None)))
    plan = plan_init(request(force=True), v, TargetState(True, False, True, True, 10**12), 10**9, NOW)
    assert plan.aside_dir == "/pg/backup.dcctl-aside-20261124T053000Z"
    assert plan.stop_first and plan.remove_partial


def test_a_primary_is_never_overwritten_even_with_force():
    v = view(site("rabat", primary()), site("backup", primary()))
    with pytest.raises(RefusedError, match="site backup runs a PRIMARY"):
        plan_init(request(force=True), v, TargetState(True, False, False, True, 10**12), 10**9, NOW)


def test_a_streaming_standby_needs_nothing():
    v = view(site("rabat", primary()), site("backup", standby()))
    assert "already streams" in plan_init(request(), v, TargetState(True, False, False, True, 10**12), 1, NOW
                                          ).nothing_to_do


def test_choose_sites():
    v = view(site("rabat", primary()), site("backup", None, error="down"))
    assert choose_sites(v, None, None) == ("rabat", "backup")
    with pytest.raises(RefusedError, match="no site named 'paris'"):
        choose_sites(v, "paris", None)
    with pytest.raises(RefusedError, match="cannot tell which site is the primary"):
        choose_sites(view(site("rabat", None, error="down"), site("backup", None, error="down")), None, None)


def test_standby_settings_use_a_passfile_never_a_password():
    settings = standby_settings(PRIMARY, "backup", STANDBY)
    assert settings["primary_conninfo"] == ("host=10.0.0.1 port=5432 user=replicator "
                                            "passfile=/var/lib/postgresql/.pgpass application_name=backup")
    assert settings["primary_slot_name"] == "dcctl_backup" and settings["port"] == "5432"
    assert "password" not in primary_conninfo(PRIMARY, "backup", PostgresConfig(data_dir="/x"))


def test_update_auto_conf_replaces_and_quotes():
    text = update_auto_conf("primary_conninfo = 'old'\n", {"primary_conninfo": "host=a passfile='/p q'"})
    assert text == "primary_conninfo = 'host=a passfile=''/p q'''\n"


def test_basebackup_progress_lines():
    seen = []

    class Reporter:
        def progress(self, done, total):
            seen.append((done, total))

    parser = BasebackupProgress(Reporter())
    parser.feed("waiting for checkpoint\n    0/30583 kB (0%), 0/1 tablespace\r  15000/30")
    parser.feed("583 kB (49%), 0/1 tablespace\n30583/30583 kB (100%), 1/1 tablespace\n")
    assert seen == [(0, 30583 * 1024), (15000 * 1024, 30583 * 1024), (30583 * 1024, 30583 * 1024)]
