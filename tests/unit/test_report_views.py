"""Pure rendering: plain lines for pipes, the plugin and TSV formats of `dcctl check`, the history
wording, the drill report's Gantt chart and labels, the service page (no I/O; Chromium renders
them in tests/integration/test_report_rendering.py)."""
import doctest
import importlib
import re
import time

import pytest

from dcctl.checks.result import CheckResult, Status
from dcctl.cli.check_formats import nagios, tsv
from dcctl.cli.output import plain_lines
from dcctl.config.schema import Thresholds
from dcctl.drill.html import GANTT_LABELS, GANTT_MIN_BAR, GANTT_WIDTH, gantt, render_html
from dcctl.ops.journal import Journal
from dcctl.ops.report import build_report
from dcctl.report.history import describe, failures_first, history_row, parse_since, rpo, rto, write_window
from dcctl.report.service_page import render_page
from tests.unit.report_journals import DAY, drill_steps, history, write_operation


@pytest.mark.parametrize("module", ["dcctl.cli.check_formats", "dcctl.cli.output", "dcctl.report.history",
                                    "dcctl.report.svg"])
def test_doctests(module):
    failures, tried = doctest.testmod(importlib.import_module(module))
    assert tried and not failures


def test_plain_lines_never_wrap_and_have_no_trailing_space():
    long_path = "/var/lib/postgresql/15/" + "very-long-directory-name/" * 8
    lines = plain_lines(["status", "check", "detail"], [["[bold red]CRIT[/]", "disk_free", f"data: 2% free at {long_path}"],
                                                        ["OK", "x", ""]])
    assert len(lines) == 3 and lines[1] == f"CRIT    disk_free  data: 2% free at {long_path}"
    assert lines[2] == "OK      x"
    assert all(line == line.rstrip() and "\n" not in line for line in lines)


def results():
    return [CheckResult("replication_lag_bytes", Status.CRIT, "standby backup has 300.0 MiB of WAL left | to replay",
                        "backup", 300 * 2**20, "warn 16.0 MiB, crit 256.0 MiB"),
            CheckResult("disk_free", Status.WARN, "store:documents: 10% free (1 GiB of 10 GiB) at /srv/docs", "backup",
                        0.1, "warn < 15%, crit < 5%"),
            CheckResult("disk_free", Status.OK, "data: 60% free (6 GiB of 10 GiB) at /pg", "backup", 0.6, "x"),
            CheckResult("drill_age", Status.UNKNOWN, "no successful drill is recorded", None, None, "warn > 8 days"),
            CheckResult("postgres_up", Status.OK, "PostgreSQL at 127.0.0.1:5432 answers (primary)", "rabat", True)]


PERF_ITEM = re.compile(r"'[^'=]+'=-?[0-9.]+(s|%|B|)?;[0-9.:]*;[0-9.:]*;[0-9.]*(;[0-9.]*)?$")


def test_nagios_output_is_one_status_line_with_perfdata_then_details():
    reports = [{"service": "massar", "checks": [r.as_dict() for r in results()]}]
    text = nagios("CRIT", reports, {"massar": Thresholds()})
    first, *details = text.splitlines()
    summary, perfdata = first.split(" | ")
    assert summary.startswith("DCCTL CRITICAL: 1 CRIT, 1 WARN, 1 UNKNOWN of 5 results; massar "
                              "replication_lag_bytes backup: standby backup has 300.0 MiB of WAL left / to replay")
    items = perfdata.split(" ")
    assert all(PERF_ITEM.match(item) for item in items), items
    assert f"'massar_replication_lag_bytes_backup'=314572800B;{16 * 2**20};{256 * 2**20};0" in items
    assert "'massar_disk_free_backup_store_documents'=10%;15:;5:;0;100" in items
    assert "'massar_disk_free_backup_data'=60%;15:;5:;0;100" in items
    assert not any("drill_age" in item or "postgres_up" in item for item in items)  # no number: no perfdata
    assert details[0].startswith("[CRIT] massar replication_lag_bytes backup:") and len(details) == 5


def test_nagios_when_all_is_well_and_tsv_rows():
    ok = [{"service": "massar", "checks": [results()[-1].as_dict()]}]
    assert nagios("OK", ok, {"massar": Thresholds()}).splitlines()[0] == "DCCTL OK: 1 of 1 results OK"
    lines = tsv([{"service": "massar", "checks": [r.as_dict() for r in results()]}]).splitlines()
    assert lines[0].split("\t") == ["service", "check", "site", "status", "value", "threshold", "detail"]
    assert len(lines) == 6 and all(len(line.split("\t")) == 7 for line in lines)
    assert lines[4].split("\t")[2:5] == ["", "UNKNOWN", ""]


def report_of(directory):
    return build_report(Journal(directory / "journal.jsonl").entries())


def test_a_non_disruptive_drill_is_shown_as_a_drill_not_as_a_role_change(tmp_path):
    drill = report_of(write_operation(tmp_path, "op-drill", "drill", time.time(), drill_steps(1.5, 0.25),
                                      args={"mode": "non-disruptive"}))
    row = history_row(drill)
    assert row[1] == "drill (non-disruptive)" and row[-1] == "drill at backup: a copy promoted, no role changed"
    assert "->" not in row[-1]
    full = dict(drill, args={"mode": "full"})
    assert describe(full) == "drill: switchover rabat -> backup, verified, and back to rabat"
    assert rto(drill) == 1.5 and rpo(drill) == 0.25 and write_window(drill) is None


def test_figures_of_each_kind_and_failures_first(tmp_path):
    now = time.time()
    ops = history(tmp_path, now)
    reports = [report_of(tmp_path / "operations" / op) for op in ops]
    switchover = next(r for r in reports if r["kind"] == "switchover")
    assert rpo(switchover) == 0.0 and rto(switchover) == write_window(switchover) == 0.9
    failover = next(r for r in reports if r["kind"] == "failover")
    assert rpo(failover) is None and write_window(failover) == 3.6
    ordered = failures_first(reports)
    assert ordered[0]["outcome"] == "failed" and all(r["outcome"] == "success" for r in ordered[1:])
    assert [r["started_at"] for r in ordered[1:]] == sorted((r["started_at"] for r in ordered[1:]), reverse=True)


def test_since_accepts_periods_and_dates():
    assert parse_since("90d", 100 * DAY) == 10 * DAY
    assert parse_since("12h", DAY) == DAY / 2 and parse_since("1w", 7 * DAY) == 0
    with pytest.raises(ValueError, match="neither a period"):
        parse_since("soon", 0)


def bars(svg: str) -> list[tuple[float, float]]:
    return [(float(x), float(w)) for x, w in re.findall(r'<rect x="([0-9.]+)" y="[0-9.]+" width="([0-9.]+)"', svg)]


def test_the_gantt_places_each_bar_at_its_start_and_keeps_short_steps_visible():
    steps = [{"step": "copy", "start_offset_s": 0.0, "seconds": 8.0, "outcome": "ok"},
             {"step": "promote", "start_offset_s": 8.0, "seconds": 0.001, "outcome": "ok"},
             {"step": "verify", "start_offset_s": 9.0, "seconds": 1.0, "outcome": "failed"}]
    svg = gantt(steps, 10.0)
    (x0, w0), (x1, w1), (x2, w2) = bars(svg)
    plot = GANTT_WIDTH - GANTT_LABELS - 60
    assert x0 == GANTT_LABELS and x1 == pytest.approx(GANTT_LABELS + plot * 0.8, abs=0.1)
    assert x2 == pytest.approx(GANTT_LABELS + plot * 0.9, abs=0.1)
    assert w0 == pytest.approx(plot * 0.8, abs=0.1) and w1 == GANTT_MIN_BAR
    assert svg.count("#cf222e") == 1  # the failed step is red
    assert "<script" not in svg


def test_the_drill_report_labels_data_loss_and_reads_sizes(tmp_path):
    drill = report_of(write_operation(tmp_path, "op-drill", "drill", time.time(), drill_steps(1.5, 0.25),
                                      args={"mode": "non-disruptive"}))
    page = render_html(drill)
    assert "<strong>Data loss:</strong> none: a drill works on a throwaway copy" in page
    assert "61.4 MiB (64,425,242 bytes)" in page and "8.0 KiB (8,192 bytes)" in page
    assert page.count("<svg") == 1


def test_the_service_page_lists_failures_first_and_escapes_what_it_shows(tmp_path):
    now = time.time()
    ops = history(tmp_path, now)
    reports = [report_of(tmp_path / "operations" / op) for op in ops]
    reports[0]["service"] = "<b>x</b>"
    page = render_page("massar <i>", reports, now - 90 * DAY, now, "/var/lib/dcctl/operations")
    assert "massar &lt;i&gt;" in page and "<i>" not in page
    table = page[page.index("<h2>Operations"):]
    assert table.index("class=fail") < table.index("verdict ok")
    assert page.count("<circle") >= 5 and "<script" not in page
