"""The shipped Alertmanager configuration: `amtool check-config` accepts it, its routes send what
they say, and a real Alertmanager (Debian's prometheus-alertmanager) applies its inhibit rules:
one stopped standby pages once (DcctlPostgresDown), not four times."""
import json
import shutil
import subprocess
import tempfile
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from dcctl.lab import procs
from tests.integration.agent_fixtures import free_port
from tests.integration.conftest import wait_for

REPO = Path(__file__).parents[2]
CONFIG = REPO / "config" / "alertmanager" / "alertmanager.yml"
RULES = REPO / "config" / "prometheus" / "dcctl-alerts.yml"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"

if not Path(AMTOOL).exists() or not Path(ALERTMANAGER).exists():
    pytest.exit("amtool is missing: run scripts/setup.sh (it installs Debian's prometheus-alertmanager)", returncode=1)


def amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60)


def test_amtool_check_config():
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("labels, receiver", [
    ({"alertname": "DcctlTwoPrimaries", "severity": "critical", "service": "massar"}, "dcctl-oncall"),
    ({"alertname": "DcctlDrillFailed", "severity": "warning", "service": "massar"}, "dcctl-ops"),
])
def test_routes(labels, receiver):
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}", *(f"{k}={v}" for k, v in labels.items()))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [receiver]


def test_inhibit_rules_name_alerts_that_exist():
    names = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    config = yaml.safe_load(CONFIG.read_text())
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            label, _, value = matcher.partition("=")
            if label == "alertname":
                assert set(value.lstrip("~").strip('"').split("|")) <= names, matcher


class Alertmanager:
    """A real Alertmanager on 127.0.0.1 with the shipped config, stopped by the PID it was started with."""

    def __init__(self, directory: Path, port: int):
        self.directory = directory
        self.url = f"http://127.0.0.1:{port}"
        self.log = directory / "alertmanager.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([ALERTMANAGER, f"--config.file={CONFIG}", f"--storage.path={directory}",
                                          f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        if not procs.wait_until(lambda: self.proc.poll() is None and procs.port_open(port), 30, interval=0.1):
            self.stop()
            raise AssertionError(f"alertmanager did not start: {self.log.read_text()[-2000:]}")

    def post(self, alerts: list[dict]) -> None:
        start = datetime.now(timezone.utc)
        body = [{"labels": labels, "startsAt": start.isoformat(), "endsAt": (start + timedelta(hours=1)).isoformat()}
                for labels in alerts]
        request = urllib.request.Request(f"{self.url}/api/v2/alerts", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200

    def alerts(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=10) as reply:
            return json.loads(reply.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def alertmanager():
    directory = Path(tempfile.mkdtemp(prefix="dcctl-am-", dir="/tmp"))
    server = Alertmanager(directory, free_port())
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_a_stopped_standby_pages_once(alertmanager):
    """The alerts one stopped standby raises (test_agent.py sees them on the lab), sent to Alertmanager:
    only DcctlPostgresDown stays active. Another service's alerts, and an SSH link that is down, are not
    inhibited by it."""
    down = {"alertname": "DcctlPostgresDown", "severity": "critical", "service": "massar", "site": "backup",
            "job": "dcctl", "instance": "backup:9640"}
    alertmanager.post([
        down,
        {"alertname": "DcctlReplicationBroken", "severity": "critical", "service": "massar"},
        {"alertname": "DcctlPeerUnreachable", "severity": "warning", "service": "massar", "site": "backup",
         "target": "postgres", "job": "dcctl", "instance": "rabat:9640"},
        {"alertname": "DcctlReplicationSlotWarning", "severity": "warning", "service": "massar"},
        {"alertname": "DcctlPeerUnreachable", "severity": "warning", "service": "massar", "site": "backup",
         "target": "transport", "job": "dcctl", "instance": "rabat:9640"},
        {"alertname": "DcctlReplicationBroken", "severity": "critical", "service": "etat"},
    ])

    def states() -> dict[tuple[str, str, str], tuple[str, list[str]]]:
        return {(a["labels"]["alertname"], a["labels"]["service"], a["labels"].get("target", "")):
                (a["status"]["state"], a["status"]["inhibitedBy"]) for a in alertmanager.alerts()}

    got = wait_for(lambda: len(states()) == 6 and states(), timeout=30, what="the six alerts")
    active = sorted(key for key, (state, _by) in got.items() if state == "active")
    assert active == [("DcctlPeerUnreachable", "massar", "transport"), ("DcctlPostgresDown", "massar", ""),
                      ("DcctlReplicationBroken", "etat", "")]
    suppressed = {key for key, (state, by) in got.items() if state == "suppressed" and by}
    assert suppressed == {("DcctlReplicationBroken", "massar", ""), ("DcctlPeerUnreachable", "massar", "postgres"),
                          ("DcctlReplicationSlotWarning", "massar", "")}


def test_without_the_source_nothing_is_inhibited(alertmanager):
    alertmanager.post([{"alertname": "DcctlReplicationBroken", "severity": "critical", "service": "massar"}])
    got = wait_for(lambda: alertmanager.alerts(), timeout=30, what="the alert")
    assert [(a["status"]["state"], a["status"]["inhibitedBy"]) for a in got] == [("active", [])]
