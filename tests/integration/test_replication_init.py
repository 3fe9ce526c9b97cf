"""dcctl replication init over the ssh transport, on the lab; and check-prereqs."""
import json

import pytest

from tests.integration.conftest import app_connect, dcctl, ssh_lab, status_json, wait_for  # noqa: F401

pytestmark = pytest.mark.lab


def standby_of(lab_):
    return next(s for s in status_json(str(lab_.spec.config_path))["sites"] if s["site"] == "backup")


def test_check_prereqs_passes_on_the_lab(ssh_lab):
    result = dcctl("replication", "check-prereqs", "-o", "json", config=str(ssh_lab.spec.config_path))
    report = json.loads(result.stdout)
    assert report["status"] == "OK", [c for c in report["checks"] if c["status"] != "OK"]
    names = {(c["name"], c["site"]) for c in report["checks"]}
    for site in ("rabat", "backup"):
        assert {("settings", site), ("replication_role", site), ("pg_hba", site), ("tools", site)} <= names


def test_init_onto_an_empty_directory_streams(ssh_lab):
    lab = ssh_lab
    pgdata = lab.spec.pgdata("backup")
    lab.stop("backup")
    lab.local.run(["rm", "-rf", "--", str(pgdata)]).check()
    lab.local.run(["mkdir", "-m", "700", str(pgdata)]).check()
    with app_connect(lab, "rabat") as primary:
        primary.execute("CREATE TABLE IF NOT EXISTS init_probe AS SELECT 42 AS answer")

    plan = dcctl("replication", "init", "--dry-run", config=str(lab.spec.config_path)).stdout
    assert "pg_basebackup" in plan and "move_aside" not in plan and not any(pgdata.iterdir())

    result = dcctl("--yes", "replication", "init", config=str(lab.spec.config_path))
    assert "standby backup streams from rabat" in result.stdout
    secrets = [line.rsplit(":", 1)[1] for line in lab.spec.pgpass.read_text().split()]
    assert not any(secret in result.stdout + result.stderr for secret in secrets)
    standby = standby_of(lab)
    assert standby["role"] == "standby" and standby["streaming"] is True
    with app_connect(lab, "backup") as conn:
        assert conn.execute("SELECT answer FROM init_probe").fetchone()[0] == 42
    auto_conf = (pgdata / "postgresql.auto.conf").read_text()
    assert "passfile=" in auto_conf and "password=" not in auto_conf
    assert not any(secret in auto_conf for secret in secrets)
    assert f"port = '{lab.spec.pg_port('backup')}'" in auto_conf
    assert not pgdata.with_name(pgdata.name + ".dcctl-partial").exists()


def test_init_on_a_streaming_standby_has_nothing_to_do(ssh_lab):
    result = dcctl("--yes", "replication", "init", config=str(ssh_lab.spec.config_path))
    assert "nothing to do" in result.stdout


def test_init_onto_a_non_empty_directory_is_refused_and_force_keeps_it_aside(ssh_lab):
    lab = ssh_lab
    pgdata = lab.spec.pgdata("backup")
    lab.stop("backup")
    marker = pgdata / "operator-notes.txt"
    lab.local.write_file(str(marker), b"kept", mode=0o600)

    refused = dcctl("--yes", "replication", "init", config=str(lab.spec.config_path), check=False)
    assert refused.returncode == 5 and "Traceback" not in refused.stderr
    assert f"data directory {pgdata} at site backup is not empty" in refused.stderr
    assert "--force" in refused.stderr
    assert marker.exists()

    forced = dcctl("--yes", "replication", "init", "--force", config=str(lab.spec.config_path))
    asides = sorted(pgdata.parent.glob("pgdata.dcctl-aside-*"))
    assert len(asides) == 1 and (asides[0] / "operator-notes.txt").read_bytes() == b"kept"
    assert str(asides[0]) in forced.stdout
    assert not marker.exists()
    assert standby_of(lab)["streaming"] is True


def test_an_interrupted_init_is_taken_over_by_the_next(ssh_lab):
    lab = ssh_lab
    pgdata = lab.spec.pgdata("backup")
    partial = pgdata.with_name(pgdata.name + ".dcctl-partial")
    lab.local.run(["mkdir", "-p", str(partial / "base")]).check()  # what a killed pg_basebackup leaves
    result = dcctl("--yes", "replication", "init", "--force", config=str(lab.spec.config_path))
    assert f"remove {partial}" in result.stdout
    assert not partial.exists()
    wait_for(lambda: standby_of(lab)["streaming"], what="streaming after init")


def test_init_refuses_to_overwrite_a_primary(ssh_lab):
    result = dcctl("--yes", "replication", "init", "--force", "--from", "backup", "--to", "rabat",
                   config=str(ssh_lab.spec.config_path), check=False)
    assert result.returncode == 5
    assert "site backup is not a reachable primary" in result.stderr
    assert "site rabat runs a PRIMARY" in result.stderr
