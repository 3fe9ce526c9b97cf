"""The lab and `dcctl status`, over the local and the ssh transport."""
import json
import shlex

import psycopg
import pytest

from dcctl.lab import procs
from dcctl.lab.lab import Lab, lab_down, read_spec
from tests.integration.conftest import app_connect, dcctl, free_port_block, status_json, wait_for

pytestmark = pytest.mark.lab


def test_status_shows_one_primary_and_a_streaming_standby(lab):
    report = status_json(str(lab.spec.config_path))
    assert report["primary"] == "rabat"
    sites = {s["site"]: s for s in report["sites"]}
    assert sites["rabat"]["role"] == "primary" and sites["rabat"]["reachable"] is True
    assert sites["backup"]["role"] == "standby" and sites["backup"]["in_recovery"] is True
    assert sites["backup"]["streaming"] is True
    assert sites["backup"]["slot"] == {"name": "dcctl_backup", "exists": True, "active": True,
                                       "retained_bytes": sites["backup"]["slot"]["retained_bytes"]}
    assert sites["backup"]["lag"]["bytes"] is not None
    assert sites["rabat"]["timeline"] == sites["backup"]["timeline"] == 1
    expected = "ssh" if lab.spec.transport == "ssh" else "local"
    assert all(s["transport"].startswith(expected) for s in report["sites"])


def test_table_output_names_sites_and_roles(lab):
    out = dcctl("status", config=str(lab.spec.config_path)).stdout
    assert "rabat" in out and "backup" in out and "primary" in out and "standby" in out


def test_row_written_on_primary_is_readable_on_standby(lab):
    with app_connect(lab, "rabat") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS probe (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO probe VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET note = excluded.note",
                     (1, f"written via {lab.spec.transport}"))

    def on_standby():
        try:
            with app_connect(lab, "backup") as conn:
                row = conn.execute("SELECT note FROM probe WHERE id = 1").fetchone()
                return row and row[0]
        except psycopg.errors.UndefinedTable:
            return None

    assert wait_for(on_standby, what="the row on the standby") == f"written via {lab.spec.transport}"
    with app_connect(lab, "backup") as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("INSERT INTO probe VALUES (2, 'standby must refuse')")


def test_stopped_standby_shows_down_with_the_cause(lab):
    lab.stop("backup")
    try:
        report = status_json(str(lab.spec.config_path))
        backup = next(s for s in report["sites"] if s["site"] == "backup")
        assert backup["postgres"]["up"] is False and backup["role"] == "unknown"
        assert f"127.0.0.1:{lab.spec.pg_port('backup')}" in backup["postgres"]["error"]
        assert backup["reachable"] is True  # the site answers; only PostgreSQL is down
        primary = next(s for s in report["sites"] if s["site"] == "rabat")
        assert primary["role"] == "primary"
        assert primary["slots"][0]["active"] is False
    finally:
        lab.start("backup")
        lab.wait_streaming("backup")


def test_lab_env_gives_a_dsn_that_reaches_the_primary(lab):
    out = dcctl("lab", "env", "--dir", lab.spec.dir).stdout
    values = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    assert shlex.split(values["DCCTL_CONFIG"])[0] == str(lab.spec.config_path)
    dsn = shlex.split(values["DCCTL_LAB_DSN"])[0]
    assert "target_session_attrs=read-write" in dsn
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False


def test_lab_up_again_is_a_no_op(lab):
    before = lab.status()
    again = Lab.up(lab.spec.dir, base_port=lab.spec.base_port, transport=lab.spec.transport)
    assert again.spec == lab.spec
    assert again.status()["sites"]["rabat"]["postgres_pid"] == before["sites"]["rabat"]["postgres_pid"]


def test_lab_status_json(lab):
    info = json.loads(dcctl("lab", "status", "--dir", lab.spec.dir, "-o", "json").stdout)
    assert set(info["sites"]) == {"rabat", "backup"}
    assert all(entry["postgres_pid"] for entry in info["sites"].values())
