"""Output for every consumer, and one exit code for a name the config does not know.

- an unknown site or service is a usage error (exit 2) listing the known names, for every command;
- -o nagios / -o tsv are `dcctl check`'s; any other command refuses them as a usage error;
- `dcctl history` (its view) shows a drill as a drill and names its HTML report;
- `dcctl report` writes one page (its rendering in Chromium: tests/integration/test_report_rendering.py).
"""
import json
import time

import pytest

from dcctl.cli.history_view import show_history
from tests.cli.test_bad_input import local_config
from tests.cli.test_errors import assert_clean_failure, run
from tests.unit.report_journals import DAY, drill_steps, history, write_operation

KNOWN_SITES = "known sites: backup, rabat"


@pytest.mark.parametrize("command", [
    ["agent", "run", "--site", "typo"],
    ["agent", "run", "--site", "typo", "--service", "massar"],
    ["install-units", "--site", "typo", "--dry-run"],
    ["replication", "init", "--to", "typo", "--dry-run"],
    ["replication", "init", "--from", "typo", "--dry-run"],
    ["node", "stop", "--site", "typo", "--dry-run"],
    ["node", "start", "--site", "typo"],
    ["node", "start", "--site", "typo", "--dry-run"],
    ["switchover", "--to", "typo", "--dry-run"],
    ["failover", "--to", "typo", "--dry-run"],
    ["rejoin", "--site", "typo", "--dry-run"],
])
def test_an_unknown_site_is_a_usage_error_listing_the_sites(tmp_path, command):
    result = run("-c", str(local_config(tmp_path)), "--yes", *command)
    assert_clean_failure(result, 2, "no site named 'typo'", KNOWN_SITES)


def test_node_start_has_a_dry_run_that_starts_nothing(tmp_path):
    result = run("-c", str(local_config(tmp_path)), "node", "start", "--site", "rabat", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would start PostgreSQL at rabat" in result.stdout


@pytest.mark.parametrize("command", [
    ["status"], ["check"], ["filesync", "status"], ["switchover", "--dry-run"], ["failover", "--dry-run"],
    ["rejoin", "--site", "rabat", "--dry-run"], ["drill", "--dry-run"], ["node", "stop", "--site", "rabat"],
    ["node", "start", "--site", "rabat"], ["agent", "run", "--site", "rabat"], ["report"],
    ["replication", "init", "--dry-run"],
])
def test_an_unknown_service_is_a_usage_error_listing_the_services(tmp_path, command):
    result = run("-c", str(local_config(tmp_path)), "--yes", *command, "--service", "nope")
    assert_clean_failure(result, 2, "no service named 'nope'", "configured: massar")


@pytest.mark.parametrize("args", [["-o", "nagios", "status"], ["status", "-o", "tsv"], ["-o", "tsv", "history"],
                                  ["history", "-o", "nagios"]])
def test_plugin_formats_belong_to_check_only(tmp_path, args):
    result = run("-c", str(local_config(tmp_path)), *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'nagios'" in result.stderr or "'tsv'" in result.stderr
    assert "table, json" in result.stderr or "'table', 'json'" in result.stderr


def test_check_accepts_the_plugin_formats_in_its_help():
    help_text = run("check", "--help").stdout
    assert "nagios" in help_text and "tsv" in help_text


def test_history_shows_a_drill_as_a_drill_with_its_html_report(tmp_path, capsys):
    state = tmp_path / "state"
    now = time.time()
    drill = write_operation(state, "20261201T000000Z-drill-aaaaaa", "drill", now - DAY, drill_steps(1.5, 0.4),
                            args={"mode": "non-disruptive"}).name
    switch = write_operation(state, "20261202T000000Z-switchover-bbbbbb", "switchover", now, []).name
    show_history(state, [switch, drill], "table")
    out = capsys.readouterr().out
    [drill_line] = [line for line in out.splitlines() if line.startswith(drill)]
    assert "drill (non-disruptive)" in drill_line and "drill at backup" in drill_line
    assert "rabat -> backup" not in drill_line  # no role changed
    [switch_line] = [line for line in out.splitlines() if line.startswith(switch)]
    assert "rabat -> backup" in switch_line
    assert f"drill {drill}: {state / 'operations' / drill / 'report.html'}" in out
    assert not any(ch in out for ch in "┏━│┃") and all(line == line.rstrip() for line in out.splitlines())

    show_history(state, [switch, drill], "json")
    entries = json.loads(capsys.readouterr().out)
    assert [e["kind"] for e in entries] == ["switchover", "drill"]
    assert entries[1]["mode"] == "non-disruptive" and entries[1]["report"].endswith(f"{drill}/report.html")
    assert entries[0]["report"].endswith("report.md") and entries[0]["description"] == "rabat -> backup"


def test_report_writes_one_page_of_the_service_history(tmp_path):
    config = local_config(tmp_path)
    ops = history(tmp_path / "state", time.time())
    write_operation(tmp_path / "state", "20250101T000000Z-drill-old000", "drill", time.time() - 200 * DAY,
                    drill_steps(1.0, 0.1), args={"mode": "non-disruptive"})
    out = tmp_path / "out"
    result = run("-c", str(config), "report", "--since", "90d", "--out", str(out))
    assert result.returncode == 0, result.stderr
    page = out / result.stdout.strip().rsplit("/", 1)[-1]
    assert result.stdout.strip() == str(page) and page.is_file()
    text = page.read_text()
    for op in ops:
        assert op in text
    assert "drill-old000" not in text  # older than --since
    assert text.index("-drill-000002") < text.index("-drill-000004")  # the failed drill comes first
    assert "<svg" in text and "<script" not in text.lower()


def test_report_refuses_a_period_it_cannot_read(tmp_path):
    result = run("-c", str(local_config(tmp_path)), "report", "--since", "last spring")
    assert result.returncode == 2 and "neither a period" in result.stderr and "Traceback" not in result.stderr
