"""A split datacenter on a three-service lab (issue 18): one service switched alone leaves the
services' primaries in two sites, which `dcctl check` reports as CRIT naming who is where."""
import json

import pytest

from tests.integration.conftest import dcctl, multi_lab, service_connect  # noqa: F401

pytestmark = pytest.mark.lab


def site_split(config: str) -> tuple[int, list[dict]]:
    """Exit code of `dcctl check --check site_split` and the site_split result of every service."""
    result = dcctl("check", "--check", "site_split", "-o", "json", config=config, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    services = json.loads(result.stdout)["services"]
    return result.returncode, [c for s in services for c in s["checks"] if c["name"] == "site_split"]


def test_one_service_switched_alone_is_a_split_datacenter_until_it_returns(multi_lab):
    config = str(multi_lab.spec.config_path)
    rc, results = site_split(config)
    assert rc == 0 and len(results) == 3
    assert results[0]["detail"] == "every service has its primary at rabat (massar, identity, portal)"

    dcctl("--yes", "switchover", "--service", "portal", "--to", "backup", config=config, timeout=180)
    try:
        with service_connect(multi_lab, "portal", "backup") as conn:  # portal writes at backup now
            assert conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()[0] is False
        rc, results = site_split(config)
        assert rc == 2 and {r["status"] for r in results} == {"CRIT"}
        assert "massar, identity at rabat; portal at backup" in results[0]["detail"]
        # -s massar still compares every service: massar itself did not move
        one = dcctl("check", "-s", "massar", "--check", "site_split", "-o", "json", config=config, check=False)
        assert one.returncode == 2 and "portal at backup" in one.stdout
    finally:
        dcctl("--yes", "switchover", "--service", "portal", "--to", "rabat", config=config, timeout=180)
    rc, results = site_split(config)
    assert rc == 0 and {r["status"] for r in results} == {"OK"}


def test_the_agent_exports_the_outcome_and_rto_of_the_last_site_switchover(multi_lab):
    import re

    config = str(multi_lab.spec.config_path)
    dcctl("--yes", "site", "switchover", "--to", "backup", config=config, timeout=300)
    dcctl("--yes", "site", "switchover", "--to", "rabat", config=config, timeout=300)
    once = dcctl("agent", "run", "--site", "rabat", "--once", config=config, check=False)
    assert "Traceback" not in once.stderr, once.stderr
    outcomes = dict(re.findall(r'dcctl_site_operation_last_outcome\{kind="switchover",outcome="(\w+)"\} (\S+)',
                               once.stdout))
    assert outcomes and float(outcomes.pop("success")) == 1 and all(float(v) == 0 for v in outcomes.values())
    [rto] = re.findall(r'dcctl_site_operation_last_rto_seconds\{kind="switchover"\} (\S+)', once.stdout)
    [duration] = re.findall(r'dcctl_site_operation_last_duration_seconds\{kind="switchover"\} (\S+)', once.stdout)
    assert 0 < float(rto) <= float(duration)
    _, results = site_split(config)
    assert {r["status"] for r in results} == {"OK"}  # back where they started, together
