"""The site agent on the real lab, scraped by a real Prometheus that evaluates the shipped rules:
roles and lag in Prometheus, the replication alert when the standby stops, `up == 0` when an
agent stops, a scrape while the peer's host does not answer, TLS and basic auth."""
import json
import re
import signal
import subprocess
import sys

import pytest

from dcctl.lab.agents import AgentProcess
from dcctl.lab.faults import Tarpit
from dcctl.lab.prometheus import PROMTOOL, PrometheusServer, agent_job
from tests.integration.agent_fixtures import (REPO, agents, free_port, metric_value, prometheus,  # noqa: F401
                                              scrape, scratch, site_of, write_config)
from tests.integration.conftest import app_connect, dcctl, wait_for

pytestmark = pytest.mark.lab


def by_site(results: list[dict]) -> dict[str, dict]:
    return {r["metric"]["site"]: r for r in results}


def alerts_named(prom, name: str) -> list[dict]:
    return [a for a in prom.alerts() if a["labels"]["alertname"] == name]


@pytest.fixture(scope="module")
def drilled(lab):
    """A drill on record, as on any site past its first week: without one DcctlDrillNeverSucceeded is
    pending (rightly), and the drill panels have nothing to show."""
    dcctl("--yes", "drill", config=str(lab.spec.config_path))


def test_prometheus_sees_both_roles_and_the_standby_lag(lab, agents, prometheus, drilled):
    info = wait_for(lambda: len(prometheus.query('dcctl_site_info{job="dcctl"}')) == 2
                    and prometheus.query('dcctl_site_info{job="dcctl"}'), timeout=60, what="both agents scraped")
    roles = {site: r["metric"]["role"] for site, r in by_site(info).items()}
    assert roles == {"rabat": "primary", "backup": "standby"}
    assert by_site(info)["backup"]["metric"]["instance"] == agents["backup"].listen

    lag = wait_for(lambda: prometheus.query('dcctl_replication_lag_bytes{job="dcctl"}'), what="standby lag")
    assert [r["metric"]["site"] for r in lag] == ["backup"] and float(lag[0]["value"][1]) >= 0
    assert [r["metric"]["site"] for r in prometheus.query("dcctl_replication_lag_seconds")] == ["backup"]
    assert float(prometheus.query('dcctl_replication_streaming{site="backup"}')[0]["value"][1]) == 1
    slots = prometheus.query("dcctl_replication_slot_active")
    assert [(r["metric"]["site"], r["metric"]["slot"], r["value"][1]) for r in slots] == \
        [("rabat", "dcctl_backup", "1")]
    in_recovery = by_site(prometheus.query("dcctl_pg_in_recovery"))
    assert {site: r["value"][1] for site, r in in_recovery.items()} == {"rabat": "0", "backup": "1"}
    # a healthy lab raises no alert (the first seconds may hold DcctlAgentsAbsent, pending)
    wait_for(lambda: prometheus.alerts() == [], timeout=30, what="no alert on a healthy lab")


def test_every_dashboard_query_runs_and_finds_data(lab, agents, prometheus, drilled):
    dashboard = json.loads((REPO / "config" / "grafana" / "dcctl-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    concrete = [e.replace("$__rate_interval", "30s").replace('"$job"', '"dcctl"').replace('"$instance"', '".*"')
                .replace('"$service"', '"massar"') for e in exprs]
    for variable in dashboard["templating"]["list"][1:]:
        if variable["type"] != "query":
            continue  # runbook_base: a constant
        concrete.append(re.sub(r"label_values\((.*), (\w+)\)", r"count by (\2) (\1)", variable["query"]["query"])
                        .replace('"$job"', '"dcctl"'))

    def empty() -> list[str]:
        return [expr for expr in concrete if not prometheus.query(expr)]

    assert wait_for(lambda: empty() == [] or None, timeout=60, what="data for every panel") is True


def test_paused_replay_raises_its_alert(lab, agents, prometheus):
    """The standby still streams, so no replication alert sees it; DcctlReplayPaused does."""
    with app_connect(lab, "backup") as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        paused = wait_for(lambda: alerts_named(prometheus, "DcctlReplayPaused"), timeout=60,
                          what="DcctlReplayPaused pending")
        assert paused[0]["labels"] == {"alertname": "DcctlReplayPaused", "service": "massar", "site": "backup",
                                       "severity": "warning"}
        assert alerts_named(prometheus, "DcctlReplicationBroken") == []
    finally:
        with app_connect(lab, "backup") as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
    wait_for(lambda: alerts_named(prometheus, "DcctlReplayPaused") == [], timeout=60, what="the alert to clear")


def test_a_stopped_standby_raises_the_replication_alert(lab, agents, prometheus):
    wait_for(lambda: prometheus.query('dcctl_pg_up{site="backup"} == 1'), timeout=60, what="backup up")
    lab.stop("backup")
    try:
        broken = wait_for(lambda: alerts_named(prometheus, "DcctlReplicationBroken"), timeout=60,
                          what="DcctlReplicationBroken pending or firing")
        assert broken[0]["state"] in ("pending", "firing")
        assert broken[0]["labels"] == {"alertname": "DcctlReplicationBroken", "service": "massar",
                                       "severity": "critical"}
        down = wait_for(lambda: alerts_named(prometheus, "DcctlPostgresDown"), timeout=30, what="DcctlPostgresDown")
        assert down[0]["labels"]["site"] == "backup"
        assert float(prometheus.query('dcctl_pg_up{site="backup"}')[0]["value"][1]) == 0
        # the primary's agent sees it too, as its peer (each agent collects and is scraped on its own clock)
        peer = wait_for(lambda: prometheus.query('dcctl_peer_up{site="backup", target="postgres"} == 0'),
                        timeout=30, what="the primary's agent to see its peer's PostgreSQL down")
        assert [r["metric"]["instance"] for r in peer] == [agents["rabat"].listen]
    finally:
        lab.start("backup")
        lab.wait_streaming("backup")
    wait_for(lambda: not alerts_named(prometheus, "DcctlReplicationBroken"), timeout=60, what="the alert to resolve")
    assert "massar: check replication_streaming OK -> CRIT: standby backup is down" in agents["rabat"].log_text()


def test_a_stopped_agent_is_down_and_stopped_cleanly(lab, agents, prometheus):
    backup = agents["backup"]
    wait_for(lambda: prometheus.query(f'up{{instance="{backup.listen}"}} == 1'), timeout=60, what="agent up")
    assert backup.stop(signal.SIGTERM) == 0
    try:
        log = backup.log_text()
        assert "SIGTERM received, stopping" in log and log.rstrip().endswith("agent stopped")
        assert "Traceback" not in log
        wait_for(lambda: prometheus.query(f'up{{instance="{backup.listen}"}} == 0'), timeout=30,
                 what="up == 0 for the stopped agent")
        assert prometheus.query(f'up{{instance="{agents["rabat"].listen}"}}')[0]["value"][1] == "1"
    finally:
        backup.start()
    wait_for(lambda: prometheus.query(f'up{{instance="{backup.listen}"}} == 1'), timeout=30, what="agent back")


def test_a_scrape_answers_while_the_peer_host_does_not(lab, agents, scratch):
    with Tarpit() as tarpit:
        port = free_port()

        def peer_in_tarpit(data):
            data["site_timeout"] = 3.0
            backup = site_of(data, "backup")
            backup["postgres"]["port"] = tarpit.port
            backup["postgres"]["connect_timeout"] = 2.0
            if backup["transport"]["type"] == "ssh":
                backup["transport"]["port"] = tarpit.port
                backup["transport"]["connect_timeout"] = 1.0
            site_of(data, "rabat")["agent"]["listen"] = f"127.0.0.1:{port}"

        agent = AgentProcess(write_config(lab, "dcctl-agent-tarpit.yaml", peer_in_tarpit), "rabat",
                             scratch / f"agent-tarpit-{lab.spec.transport}.log")
        agent.start()
        try:
            # scrapes right from the start, while collections wait on the tarpit: each one answers
            for _ in range(10):
                status, _ = scrape(f"{agent.url}/metrics", timeout=5)
                assert status == 200

            def peer_down():
                text = scrape(f"{agent.url}/metrics", timeout=5)[1]
                return metric_value(text, "dcctl_peer_up", site="backup", target="postgres") == 0 and text

            text = wait_for(peer_down, timeout=30, what="dcctl_peer_up 0 for the tarpit")
            assert metric_value(text, "dcctl_pg_up", site="rabat") == 1
            assert metric_value(text, "dcctl_site_info", site="rabat", role="primary") == 1
            transport_up = metric_value(text, "dcctl_peer_up", site="backup", target="transport")
            assert transport_up == (0 if lab.spec.transport == "ssh" else 1)  # local: nothing to reach
            assert metric_value(text, "dcctl_check_status", check="replication_streaming") == 2
            assert metric_value(text, "dcctl_collector_up", collector="status") == 1  # a dead peer is data
            assert tarpit.held >= 1
            assert wait_for(lambda: scrape(f"{agent.url}/healthz", timeout=5)[0] == 200, timeout=30,
                            what="healthz 200 with a dead peer")
        finally:
            assert agent.stop() == 0


@pytest.fixture(scope="module")
def tls_files(scratch):
    cert, key = scratch / "agent.crt", scratch / "agent.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


def test_tls_and_basic_auth(lab, agents, scratch, tls_files):
    cert, key = tls_files
    hashed = subprocess.run([sys.executable, "-m", "dcctl", "agent", "hash-password", "--rounds", "4"],
                            input="s3cret\n", capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    port = free_port()

    def secured(data):
        site_of(data, "rabat")["agent"].update(listen=f"127.0.0.1:{port}", tls_cert_file=cert, tls_key_file=key,
                                               basic_auth_username="prometheus", basic_auth_password_hash=hashed)

    config = write_config(lab, "dcctl-agent-tls.yaml", secured)
    assert "s3cret" not in open(config).read()
    agent = AgentProcess(config, "rabat", scratch / f"agent-tls-{lab.spec.transport}.log").start()
    try:
        url = f"https://127.0.0.1:{port}"
        assert scrape(f"{url}/metrics", cafile=cert)[0] == 401
        assert scrape(f"{url}/healthz", cafile=cert)[0] == 401
        assert scrape(f"{url}/metrics", user="prometheus", password="wrong", cafile=cert)[0] == 401
        status, text = wait_for(lambda: (lambda r: r[0] == 200 and "dcctl_pg_up" in r[1] and r)(
            scrape(f"{url}/metrics", user="prometheus", password="s3cret", cafile=cert)), timeout=30,
            what="an authenticated HTTPS scrape with data")
        assert metric_value(text, "dcctl_pg_up", site="rabat") == 1
        with pytest.raises(Exception):
            scrape(f"http://127.0.0.1:{port}/metrics", timeout=5)  # plain HTTP on the TLS port
        assert "listening on https://127.0.0.1" in agent.log_text()

        # and a real Prometheus scrapes it as config/prometheus/scrape.example.yml says
        password_file = scratch / "agent.password"
        password_file.write_text("s3cret\n")
        job = agent_job("dcctl", [f"127.0.0.1:{port}"], scheme="https", ca_file=cert, username="prometheus",
                        password_file=str(password_file))
        with PrometheusServer(scratch / f"prometheus-tls-{lab.spec.transport}", free_port(), [job]) as prom:
            wait_for(lambda: prom.query('dcctl_pg_up{site="rabat"} == 1'), timeout=60,
                     what="Prometheus scraping over TLS with basic auth")
            assert prom.query("up")[0]["value"][1] == "1"
        assert "Traceback" not in agent.log_text()
    finally:
        assert agent.stop() == 0


def test_once_prints_valid_metrics(lab):
    result = dcctl("agent", "run", "--site", "backup", "--once", config=str(lab.spec.config_path))
    assert metric_value(result.stdout, "dcctl_pg_in_recovery", site="backup") == 1
    assert metric_value(result.stdout, "dcctl_replication_streaming", site="backup") == 1
    assert "first collection: backup is standby" in result.stderr
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=result.stdout, capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_expected_failures_are_one_line(lab, agents):
    config = str(lab.spec.config_path)
    unknown = dcctl("agent", "run", "--site", "casa", config=config, check=False)
    assert unknown.returncode == 2 and "no site named 'casa'" in unknown.stderr and "Traceback" not in unknown.stderr
    busy = dcctl("agent", "run", "--site", "rabat", config=config, check=False, timeout=60)  # the fixture's agent
    assert busy.returncode == 1 and "Traceback" not in busy.stderr
    assert f"dcctl: error: cannot listen on {agents['rabat'].listen}" in busy.stderr
