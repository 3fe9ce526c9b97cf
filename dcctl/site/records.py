"""The files a site operation leaves next to its journal (report.json, .md, .html), and the site
report read back for `dcctl history`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from dcctl.config.schema import Config
from dcctl.errors import DcctlError
from dcctl.ops.journal import Journal
from dcctl.ops.report import OperationReport, build_report, write_private
from dcctl.report.site import build_site_report, html_page, markdown, to_json


def child_reports(state_dir: str | Path, site_entries: list[dict[str, Any]]) -> dict[str, OperationReport]:
    """The report of every service operation the site journal names, by operation id."""
    found: dict[str, OperationReport] = {}
    for entry in site_entries:
        op_id = entry.get("operation") if entry["event"] in ("service_start", "service_end") else None
        if not op_id or op_id in found:
            continue
        try:
            entries = Journal.open(state_dir, op_id).entries()
        except DcctlError:
            continue  # unreadable: the site report shows the service without its figures
        if entries:
            found[op_id] = build_report(entries)
    return found


def site_report(state_dir: str | Path, journal: Journal) -> dict[str, Any]:
    entries = journal.entries()
    return build_site_report(entries, child_reports(state_dir, entries))


def write_site_report(config: Config, journal: Journal) -> tuple[Path, Path]:
    report = site_report(config.state_dir, journal)
    json_path, md_path = journal.directory / "report.json", journal.directory / "report.md"
    write_private(json_path, to_json(report))
    write_private(md_path, markdown(report))
    write_private(journal.directory / "report.html", html_page(report))
    return json_path, md_path
