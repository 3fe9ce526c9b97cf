"""The shipped Prometheus rules, their promtool unit tests, the scrape example and the Grafana
dashboard: valid, covered both ways, pointing at runbooks that exist and metrics that exist."""
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from dcctl.agent.metrics import METRICS
from dcctl.lab.prometheus import PROMTOOL

REPO = Path(__file__).parents[2]
RULES = REPO / "config" / "prometheus" / "dcctl-alerts.yml"
# Minute by minute, and over days (evaluated hourly: promtool would take a minute otherwise).
RULE_TESTS = [REPO / "config" / "prometheus" / name for name in ("dcctl-alerts.test.yml", "dcctl-alerts.days.test.yml")]
SCRAPE = REPO / "config" / "prometheus" / "scrape.example.yml"
DASHBOARD = REPO / "config" / "grafana" / "dcctl-dashboard.json"
RUNBOOKS = REPO / "docs" / "runbooks.md"
# The external label runbook_base, else the project's published copy (dcctl-alerts.yml, top comment).
RUNBOOK_BASE = ("{{ with $externalLabels.runbook_base }}{{ . }}{{ else }}"
                "https://github.com/dcctl/dcctl/blob/main/docs/runbooks.md{{ end }}")

if not Path(PROMTOOL).exists():
    pytest.exit(f"{PROMTOOL} is missing: run scripts/setup.sh (it installs Debian's prometheus package)", returncode=1)

PROMQL_WORDS = {"up", "time", "max", "min", "count", "sum", "avg", "by", "without", "on", "ignoring", "and", "or",
                "unless", "absent", "deriv", "rate", "increase", "bool", "offset", "label_values", "changes",
                "humanizeDuration", "job", "instance", "service", "site", "check", "slot", "volume", "target",
                "collector", "role", "pooler"}


def promtool(*args, cwd=None):
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def alerts():
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values are not names
    expr = re.sub(r"\{[^}]*\}", "", expr)  # nor label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # nor range selectors
    return {w for w in re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", expr) if w not in PROMQL_WORDS}


def test_promtool_check_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_test_rules():
    result = promtool("test", "rules", *(path.name for path in RULE_TESTS), cwd=RULE_TESTS[0].parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_silent():
    cases = [case for path in RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]
             for case in test["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested silent"


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_every_alert_has_severity_summary_description_and_an_existing_runbook(rule):
    assert rule["labels"]["severity"] in ("warning", "critical")
    annotations = rule["annotations"]
    assert annotations["summary"] and annotations["description"]
    page, _, anchor = annotations["runbook_url"].partition("#")
    assert page == RUNBOOK_BASE  # absolute: it must open from Alertmanager and its notifications
    headings = {re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-"))
                for h in re.findall(r"^#+ (.+)$", RUNBOOKS.read_text(), flags=re.M)}
    assert anchor in headings


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_alerts_use_only_metrics_the_agent_exports(rule):
    """A rule on a renamed metric never fires (postgres_exporter's pg_replication_lag rule did just that)."""
    assert metric_names(rule["expr"]) <= set(METRICS)


def test_the_scrape_example_is_a_valid_prometheus_config(tmp_path):
    data = yaml.safe_load(SCRAPE.read_text())
    assert [job["job_name"] for job in data["scrape_configs"]] == ["dcctl"]  # the rules select job="dcctl"
    data["rule_files"] = [str(RULES)]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(data))
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr


def dashboard_targets(dashboard):
    return [t for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_dashboard_is_portable():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "dcctl-overview" and dashboard["schemaVersion"] >= 36 and "dcctl" in dashboard["tags"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance", "service"} <= set(variables)
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("role", "lag", "slot", "check"):
        assert topic in titles
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    for target in dashboard_targets(dashboard):
        assert target["datasource"]["uid"] == "${datasource}"
        assert 'job=~"$job"' in target["expr"] and 'instance=~"$instance"' in target["expr"], target["expr"]
        assert metric_names(target["expr"]) <= set(METRICS) | {"process_resident_memory_bytes"}, target["expr"]
        if "[" in target["expr"]:
            assert "[$__rate_interval]" in target["expr"]


def test_alerts_name_only_checks_that_exist():
    from dcctl.checks.catalog import Facts, run_checks
    from dcctl.config.schema import Thresholds
    from tests.unit.views import healthy

    produced = {r.name for r in run_checks(Facts(healthy(), Thresholds()))}
    named = set()
    for rule in alerts():
        for matcher in re.findall(r'check(=~|!~|=)"([^"]*)"', rule["expr"]):
            named |= set(matcher[1].split("|"))
    assert named and named <= produced


def runbook_anchors() -> set[str]:
    return {re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-"))
            for h in re.findall(r"^#+ (.+)$", RUNBOOKS.read_text(), flags=re.M)}


def test_the_dashboard_links_runbooks_by_absolute_url():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["runbook_base"]["type"] == "constant"
    assert variables["runbook_base"]["query"].startswith("https://")
    links = [link for p in dashboard["panels"] for link in p.get("links", [])]
    assert len(links) >= 10
    for link in links:
        base, _, anchor = link["url"].partition("#")
        assert base == "${runbook_base}" and anchor in runbook_anchors(), link
    assert [link["url"] for link in dashboard["links"]] == ["${runbook_base}"]


def test_the_dashboard_shows_drills_and_file_sync():
    """Issue 17: metrics that were exported but on no panel."""
    dashboard = json.loads(DASHBOARD.read_text())
    used = set().union(*(metric_names(t["expr"]) for t in dashboard_targets(dashboard)))
    for name in ("dcctl_drill_last_success_timestamp_seconds", "dcctl_drill_last_rto_seconds",
                 "dcctl_drill_last_rpo_seconds", "dcctl_drill_last_succeeded", "dcctl_filesync_lag_seconds",
                 "dcctl_filesync_pending_files", "dcctl_filesync_blocked", "dcctl_filesync_holding_bytes",
                 "dcctl_build_info", "dcctl_pg_server_version", "dcctl_volume_avail_bytes"):
        assert name in used, name
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert "Drills" in rows and "File sync" in rows


def test_the_scrape_example_sets_the_runbook_base():
    data = yaml.safe_load(SCRAPE.read_text())
    assert data["global"]["external_labels"]["runbook_base"].startswith("https://")


def test_alert_annotations_link_nothing_relative():
    for rule in alerts():
        for value in rule["annotations"].values():
            assert "docs/runbooks.md#" not in value.replace(RUNBOOK_BASE, ""), rule["alert"]
