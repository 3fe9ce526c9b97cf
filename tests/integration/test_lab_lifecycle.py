"""lab up/down leave nothing behind; bad lab directories are refused clearly."""
import os

import psycopg
import pytest

from dcctl.lab import procs
from dcctl.lab.lab import Lab, lab_down
from tests.integration.conftest import dcctl, free_port_block

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("transport", ["local", "ssh"])
def test_lab_down_leaves_no_process_and_no_port(open_tmp, transport):
    directory = open_tmp / "lab"
    base = free_port_block()
    result = dcctl("lab", "up", "--dir", str(directory), "--base-port", str(base), "--transport", transport)
    assert f"DCCTL_CONFIG={directory}/dcctl.yaml" in result.stdout
    lab = Lab(__import__("dcctl.lab.lab", fromlist=["read_spec"]).read_spec(directory))
    status = lab.status()
    pids = [entry["postgres_pid"] for entry in status["sites"].values()]
    pids += [entry.get("sshd_pid") for entry in status["sites"].values() if entry.get("sshd_pid")]
    ports = lab.spec.ports()
    assert all(pids) and all(procs.port_open(p) for p in ports)

    dcctl("lab", "down", "--dir", str(directory))
    assert not directory.exists()
    assert not any(procs.alive(pid) for pid in pids)
    assert not any(procs.port_open(p) for p in ports)
    assert "nothing to do" in dcctl("lab", "down", "--dir", str(directory)).stderr


def test_lab_up_refuses_a_directory_that_is_not_a_lab(open_tmp):
    (open_tmp / "precious.txt").write_text("do not touch")
    result = dcctl("lab", "up", "--dir", str(open_tmp), "--base-port", str(free_port_block()), check=False)
    assert result.returncode == 5
    assert "not empty" in result.stderr and "Traceback" not in result.stderr
    assert (open_tmp / "precious.txt").read_text() == "do not touch"


def test_lab_up_refuses_a_busy_port(open_tmp):
    import socket

    base = free_port_block()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", base + 1))
        sock.listen()
        result = dcctl("lab", "up", "--dir", str(open_tmp / "lab"), "--base-port", str(base), check=False)
    assert result.returncode == 5
    assert f"{base + 1}" in result.stderr and "--base-port" in result.stderr
    assert not (open_tmp / "lab").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the servers to another user")
def test_lab_refuses_a_directory_the_postgres_user_cannot_enter(tmp_path):
    # pytest's tmp_path is under /tmp/pytest-of-root, mode 0700
    result = dcctl("lab", "up", "--dir", str(tmp_path / "lab"), "--base-port", str(free_port_block()), check=False)
    assert result.returncode == 1
    assert "cannot enter" in result.stderr and "postgres" in result.stderr
    assert not (tmp_path / "lab").exists()


def test_a_three_service_lab_streams_every_service_and_down_leaves_nothing(open_tmp):
    import json

    from dcctl.lab.lab import read_spec
    from dcctl.lab.layout import port_span

    directory = open_tmp / "lab"
    base = free_port_block(port_span(3))
    dcctl("lab", "up", "--dir", str(directory), "--base-port", str(base), "--services", "3")
    config = str(directory / "dcctl.yaml")
    lab = Lab(read_spec(directory))
    assert lab.spec.service_names == ("massar", "identity", "portal")
    info = json.loads(dcctl("lab", "status", "--dir", str(directory), "-o", "json").stdout)
    pids = [entry["postgres_pid"] for service in info["services"].values() for entry in service["sites"].values()]
    ports = lab.spec.ports()
    assert len(set(pids)) == 6 and all(pids) and len(set(ports)) == 6 and all(procs.port_open(p) for p in ports)
    assert info["sites"] == info["services"]["massar"]["sites"]  # the first service, where it always was
    assert info["services"]["massar"]["sites"]["rabat"]["postgres_port"] == base  # unchanged for one service

    reports = json.loads(dcctl("status", "-o", "json", config=config).stdout)["services"]
    assert [r["service"] for r in reports] == ["massar", "identity", "portal"]
    for report in reports:
        assert report["primary"] == "rabat", report
        [standby] = [s for s in report["sites"] if s["site"] == "backup"]
        assert standby["streaming"], report
    for service in ("identity", "portal"):  # its own database, reached through its own DSN
        with psycopg.connect(lab.spec.app_dsn(service)) as conn:
            assert conn.execute("SELECT pg_catalog.current_database()").fetchone()[0] == service
    env = dcctl("lab", "env", "--dir", str(directory)).stdout
    assert "DCCTL_LAB_DSN_PORTAL=" in env and f"port={base},{base + 1} " in env
    refused = dcctl("lab", "up", "--dir", str(directory), "--base-port", str(base), check=False)
    assert refused.returncode == 5 and "--services 3" in refused.stderr

    dcctl("lab", "down", "--dir", str(directory))
    assert not directory.exists()
    assert not any(procs.alive(pid) for pid in pids)
    assert not any(procs.port_open(p) for p in ports)
