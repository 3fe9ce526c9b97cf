"""The whole story on the lab, as an ops engineer would run it: lab up, status, check, a
non-disruptive drill, a full drill with an application writing, reports, lab down.
Every dcctl step runs the real CLI in a subprocess, exactly as typed at a terminal."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psycopg
from rich.console import Console
from rich.rule import Rule

from dcctl.lab.lab import Lab, lab_down
from dcctl.lab.writer import Writer, missing_ids

console = Console(highlight=False)


def step(title: str) -> None:
    console.print(Rule(f"[bold]{title}"))


def dcctl(config: str, *args: str, show: bool = True) -> subprocess.CompletedProcess:
    console.print(f"[dim]$ dcctl {' '.join(args)}[/]")
    env = dict(os.environ, DCCTL_CONFIG=config, COLUMNS="120")
    result = subprocess.run([sys.executable, "-m", "dcctl", *args], capture_output=True, text=True, env=env)
    if show and result.stdout.strip():
        console.file.write(result.stdout.rstrip() + "\n")  # already laid out by dcctl itself
        console.file.flush()
    if result.returncode not in (0, 1, 2, 3):
        console.print(result.stderr.rstrip(), markup=False)
        raise SystemExit(f"demo stopped: dcctl {' '.join(args)} exited {result.returncode}")
    return result


def run(directory: str, base_port: int) -> None:
    started = time.monotonic()
    step("1. lab up: two PostgreSQL 15 servers on 127.0.0.1, rabat primary, backup standby")
    lab = Lab.up(directory, base_port=base_port, transport="local",
                 progress=lambda text: console.print(f"  [dim]{text}[/]"))
    config = str(lab.spec.config_path)
    try:
        step("2. an application writes: 1,000 enrolments through the multi-host DSN")
        with psycopg.connect(lab.spec.app_dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS enrolment (id bigserial PRIMARY KEY, student text NOT NULL, "
                         "school text NOT NULL, at timestamptz NOT NULL DEFAULT now())")
            conn.execute("INSERT INTO enrolment (student, school) SELECT 'student-' || n, 'school-' || (n % 40) "
                         "FROM generate_series(1, 1000) AS n")
        console.print(f"  [dim]DSN: {lab.spec.app_dsn()}[/]")

        step("3. dcctl status")
        dcctl(config, "status")

        step("4. dcctl check")
        check_summary(dcctl(config, "-o", "json", "check", show=False))

        step("5. a non-disruptive drill: a throwaway copy of the standby, promoted, verified, removed")
        first = json.loads(dcctl(config, "--yes", "-o", "json", "drill", show=False).stdout)
        summary(first)

        step("6. a full drill: switchover to backup and back, while the application keeps writing")
        with Writer(lab.spec.app_dsn(), rate=100) as writer:
            writer.wait_for_commits(50)
            full = json.loads(dcctl(config, "--yes", "-o", "json", "drill", "--mode", "full", show=False).stdout)
            writer.wait_for_commits(50)
        lost = missing_ids(lab.spec.app_dsn(), writer.stats.acknowledged)
        summary(full)
        console.print(f"  application: {len(writer.stats.acknowledged)} commits acknowledged, "
                      f"[bold]{len(lost)} lost[/], longest pause {writer.stats.longest_gap():.3f} s")

        step("7. dcctl check again, and the history")
        check_summary(dcctl(config, "-o", "json", "check", show=False))
        dcctl(config, "history")
        reports = lab.spec.state_dir / "operations"
        console.print("reports (JSON, Markdown, and HTML for drills):")
        for directory_ in sorted(reports.iterdir()):
            for name in ("report.html", "report.md"):
                if (directory_ / name).exists():
                    console.print(f"  {directory_ / name}")
                    break
    finally:
        step("8. lab down")
        lab_down(directory, progress=lambda text: console.print(f"  [dim]{text}[/]"))
    console.print(f"[bold green]demo done in {time.monotonic() - started:.1f} s[/]")


def check_summary(result: subprocess.CompletedProcess) -> None:
    report = json.loads(result.stdout)
    checks = report["services"][0]["checks"]
    ok = sum(1 for c in checks if c["status"] == "OK")
    console.print(f"  exit {result.returncode} ({report['status']}): {ok} of {len(checks)} results OK")
    for c in checks:
        if c["status"] != "OK":
            console.print(f"  {c['status']} {c['name']}: {c['detail']}")


def summary(report: dict) -> None:
    observed = report["observed"]
    color = "green" if report["outcome"] == "success" else "red"
    line = f"  [{color}]{report['outcome']}[/] in {report['wall_seconds']:.2f} s"
    if observed.get("rto_seconds") is not None:
        line += f"; time to ready (RTO) {observed['rto_seconds']:.3f} s"
    if observed.get("rpo_seconds") is not None:
        line += f"; data freshness (RPO) {observed['rpo_seconds']:.3f} s"
    for key in ("switchover_there_write_unavailability_seconds", "switchover_back_write_unavailability_seconds"):
        if observed.get(key) is not None:
            line += f"; {key.split('_write')[0].replace('_', ' ')}: writes paused {observed[key]:.3f} s"
    console.print(line)
    for check in observed.get("checks", []):
        console.print(f"    {'PASS' if check['passed'] else 'FAIL'} {check['detail']}")
