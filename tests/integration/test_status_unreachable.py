"""`dcctl status` when the standby's host has stopped answering: a tarpit accepts the TCP
connection and never sends a byte, so only the configured connect timeouts end the wait."""
import json

import pytest
import yaml

from dcctl.lab.faults import Tarpit
from tests.integration.conftest import dcctl

pytestmark = pytest.mark.lab


@pytest.fixture
def tarpit():
    with Tarpit() as tarpit_:
        yield tarpit_


def config_with_standby_at(lab, port: int) -> str:
    """A copy of the lab's config whose backup site (PostgreSQL, and SSH for the ssh lab) is at
    `port`, with timeouts lowered to keep the suite fast."""
    data = yaml.safe_load(lab.spec.config_path.read_text())
    data["site_timeout"] = 3.0
    backup = data["services"]["massar"]["sites"]["backup"]
    backup["postgres"]["port"] = port
    backup["postgres"]["connect_timeout"] = 2.0
    if backup["transport"]["type"] == "ssh":
        backup["transport"]["port"] = port
        backup["transport"]["connect_timeout"] = 1.0
    path = lab.spec.root / "dcctl-standby-tarpit.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_status_shows_an_unanswering_standby_host_as_down_with_the_timeout(lab, tarpit):
    result = dcctl("status", "-o", "json", config=config_with_standby_at(lab, tarpit.port))
    assert result.returncode == 0
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)["services"][0]
    sites = {s["site"]: s for s in report["sites"]}

    assert report["primary"] == "rabat"
    assert sites["rabat"]["role"] == "primary" and sites["rabat"]["postgres"]["up"] is True

    backup = sites["backup"]
    assert backup["postgres"]["up"] is False and backup["role"] == "unknown"
    error = backup["postgres"]["error"]
    assert f"127.0.0.1:{tarpit.port}" in error and "timeout" in error, error
    if lab.spec.transport == "ssh":
        assert backup["reachable"] is False  # failed within ssh connect_timeout, before site_timeout
        assert f"127.0.0.1:{tarpit.port}" in backup["transport_error"], backup["transport_error"]
    else:
        assert backup["reachable"] is True  # local transport: nothing to reach
    assert tarpit.held >= 1  # the fault was really exercised
