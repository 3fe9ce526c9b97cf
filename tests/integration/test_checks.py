"""dcctl check on the lab, each failing state created for real."""
import pytest

from dcctl.checks.catalog import CATALOG
from tests.integration.conftest import (app_connect, check_json, config_variant, local_lab, results_named,  # noqa: F401
                                        ssh_lab, wait_for)

pytestmark = pytest.mark.lab
ALL_BUT_DRILL = [name for name in CATALOG if name not in ("drill_age", "filesync")]  # no drill, no agent yet


def test_a_healthy_lab_passes_every_check_but_the_missing_drill(local_lab):
    rc, checks = check_json(str(local_lab.spec.config_path), *ALL_BUT_DRILL)
    assert rc == 0, [c for c in checks if c["status"] != "OK"]
    assert {c["name"] for c in checks} >= {"site_reachable", "postgres_up", "one_primary", "replication_streaming",
                                           "replication_lag_bytes", "replication_lag_seconds", "replication_slots",
                                           "timeline_consistent", "failover_readiness", "disk_free", "clock_skew"}
    rc, checks = check_json(str(local_lab.spec.config_path))
    assert rc == 3 and [c["name"] for c in checks if c["status"] != "OK"] == ["drill_age", "filesync_lag"]


def test_standby_stopped_is_crit_and_names_the_node(local_lab):
    local_lab.stop("backup")
    try:
        rc, checks = check_json(str(local_lab.spec.config_path))
        assert rc == 2
        [streaming] = results_named(checks, "replication_streaming")
        assert streaming["status"] == "CRIT" and streaming["site"] == "backup"
        assert "standby backup is down" in streaming["detail"]
        assert f"127.0.0.1:{local_lab.spec.pg_port('backup')}" in streaming["detail"]
        assert checks[0]["status"] == "CRIT"  # worst first
    finally:
        local_lab.start("backup")
        local_lab.wait_streaming("backup")


def test_paused_replay_raises_lag_warn_then_crit_at_the_thresholds(local_lab):
    def thresholds(data):
        data["services"]["massar"]["thresholds"] = {
            "lag_bytes_warn": 1024 * 1024, "lag_bytes_crit": 16 * 1024 * 1024,
            "lag_seconds_warn": 1.0, "lag_seconds_crit": 4.0}

    config = config_variant(local_lab, "low-lag-thresholds", thresholds)
    with app_connect(local_lab, "rabat") as primary, app_connect(local_lab, "backup") as standby:
        primary.execute("CREATE TABLE IF NOT EXISTS lag_probe (id serial, pad text)")
        primary.execute("INSERT INTO lag_probe (pad) VALUES ('before the pause')")
        wait_for(lambda: replayed_rows(standby, "lag_probe") >= 1, what="replay")
        standby.execute("SELECT pg_wal_replay_pause()")
        try:
            primary.execute("INSERT INTO lag_probe (pad) SELECT repeat('x', 1000) FROM generate_series(1, 2500)")

            def status_of(name):
                return results_named(check_json(config, "replication_lag")[1], name)[0]

            lag = wait_for(lambda: (c := status_of("replication_lag_bytes"))["status"] != "OK" and c,
                           what="lag bytes WARN")
            assert lag["status"] == "WARN" and 1024 * 1024 <= lag["value"] < 16 * 1024 * 1024
            assert "replay is paused" in lag["detail"]
            seconds = wait_for(lambda: (c := status_of("replication_lag_seconds"))["status"] == "WARN" and c,
                               what="lag seconds WARN")
            assert 1.0 <= seconds["value"] < 4.0

            primary.execute("INSERT INTO lag_probe (pad) SELECT repeat('y', 1000) FROM generate_series(1, 20000)")
            lag = wait_for(lambda: (c := status_of("replication_lag_bytes"))["status"] == "CRIT" and c,
                           what="lag bytes CRIT")
            assert lag["value"] >= 16 * 1024 * 1024
            seconds = wait_for(lambda: (c := status_of("replication_lag_seconds"))["status"] == "CRIT" and c,
                               what="lag seconds CRIT")
            assert seconds["value"] >= 4.0
        finally:
            standby.execute("SELECT pg_wal_replay_resume()")
    wait_for(lambda: results_named(check_json(config, "replication_lag")[1], "replication_lag_bytes")[0]["status"]
             == "OK", what="lag back to OK")


def replayed_rows(conn, table: str) -> int:
    import psycopg

    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except psycopg.errors.UndefinedTable:
        return 0


def test_an_inactive_slot_retaining_wal_warns(local_lab):
    with app_connect(local_lab, "rabat", dbname="postgres") as primary:
        primary.execute("SELECT pg_create_physical_replication_slot('forgotten_standby', true)")
        try:
            primary.execute("CREATE TABLE IF NOT EXISTS slot_probe AS SELECT generate_series(1, 20000) AS n")
            primary.execute("SELECT pg_switch_wal()")
            rc, checks = check_json(str(local_lab.spec.config_path), "replication_slots")
            slots = {c["detail"].split()[1]: c for c in results_named(checks, "replication_slots")}
            assert slots["forgotten_standby"]["status"] == "WARN" and rc == 1
            assert "inactive" in slots["forgotten_standby"]["detail"]
            assert "pg_drop_replication_slot('forgotten_standby')" in slots["forgotten_standby"]["detail"]
            assert slots["dcctl_backup"]["status"] == "OK"
        finally:
            primary.execute("SELECT pg_drop_replication_slot('forgotten_standby')")


def test_wal_log_hints_off_without_checksums_warns_failover_readiness(local_lab):
    lab = local_lab
    pgdata = str(lab.spec.pgdata("backup"))
    checksums = [f"{lab.spec.bin_dir}/pg_checksums", "-D", pgdata]
    node_conf = lab.spec.pgdata("backup") / "dcctl-node.conf"
    original = node_conf.read_text()
    lab.stop("backup")
    try:
        lab.local.run([*checksums, "--disable"]).check("pg_checksums --disable")
        node_conf.write_text(original + "wal_log_hints = off\n")
        lab.start("backup")
        rc, checks = check_json(str(lab.spec.config_path), "failover_readiness")
        [backup] = results_named(checks, "failover_readiness", "backup")
        assert backup["status"] == "WARN" and rc == 1
        assert "pg_rewind" in backup["detail"] and "wal_log_hints = on" in backup["detail"]
        assert results_named(checks, "failover_readiness", "rabat")[0]["status"] == "OK"
    finally:
        lab.stop("backup")
        node_conf.write_text(original)
        lab.local.run([*checksums, "--enable"], timeout=300).check("pg_checksums --enable")
        lab.start("backup")
        lab.wait_streaming("backup")


def test_a_closed_ssh_port_is_crit_with_host_and_port(ssh_lab):
    sshd = ssh_lab.sshds()["backup"]
    sshd.stop()
    try:
        rc, checks = check_json(str(ssh_lab.spec.config_path))
        assert rc == 2
        [site] = results_named(checks, "site_reachable", "backup")
        assert site["status"] == "CRIT"
        assert f"127.0.0.1:{ssh_lab.spec.sshd_port('backup')}" in site["detail"] and "refused" in site["detail"]
        [disk] = results_named(checks, "disk_free", "backup")
        assert disk["status"] == "UNKNOWN"
        assert results_named(checks, "replication_streaming")[0]["status"] == "OK"  # PostgreSQL itself is fine
    finally:
        sshd.start()
