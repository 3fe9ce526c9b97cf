"""The whole story on the lab, as an ops engineer would run it: lab up, both agents, an application
writing rows while scanned documents arrive in the primary's store and follow to the backup, status,
check, a non-disruptive drill, a switchover that reverses the documents' flow and a switchover back
under load, with several services the whole datacenter moved there and back by the recovery plan,
every check OK, history, reports, lab down.
Every dcctl step runs the real CLI in a subprocess, exactly as typed at a terminal."""
from __future__ import annotations

import json
import os
import pwd
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
from rich.console import Console
from rich.rule import Rule

from dcctl.lab import pgbouncer
from dcctl.lab.agents import AgentProcess
from dcctl.lab.lab import Lab, lab_down
from dcctl.lab.layout import PRIMARY_SITE, SERVICE, SITES, STANDBY_SITE
from dcctl.lab.writer import Writer, missing_ids

console = Console(highlight=False)
STORE = "documents"
DEMO_SERVICES = 3  # a recovery plan of two groups: identity first, then massar and portal at once
ARRIVAL_TIMEOUT = 60.0


def step(title: str) -> None:
    console.print(Rule(f"[bold]{title}"))


def dcctl(config: str, *args: str, show: bool = True, echo: bool = True) -> subprocess.CompletedProcess:
    if echo:
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
    problems: list[str] = []
    step(f"1. lab up: {DEMO_SERVICES} service(s), each a PostgreSQL 15 primary at rabat and standby at backup, "
         f"on 127.0.0.1")
    lab = Lab.up(directory, base_port=base_port, transport="local", services=DEMO_SERVICES,
                 progress=lambda text: console.print(f"  [dim]{text}[/]"))
    poolers = pgbouncer.enable(lab)
    console.print("  [dim]PgBouncer (transaction pooling) at each site, in front of the primary: "
                  + ", ".join(f"{site} 127.0.0.1:{port}" for site, port in poolers.items()) + "[/]")
    config = str(lab.spec.config_path)
    agents: dict[str, AgentProcess] = {}
    try:
        step("2. the dcctl agent on each site: metrics, and the document store's continuous sync")
        agents = start_agents(lab)

        step("3. an application writes rows, and 300 scanned documents arrive in rabat's store")
        problems += rows_and_documents(lab, config)

        step("4. dcctl status")
        dcctl(config, "status")

        step("5. dcctl check: no drill has run yet, so drill_age cannot be judged")
        check_summary(dcctl(config, "-o", "json", "check", show=False))

        step("6. a non-disruptive drill of each service: a throwaway copy of the standby, promoted, verified, "
             "removed")
        summary(json.loads(dcctl(config, "--yes", "-o", "json", "drill", "-s", SERVICE, show=False).stdout))
        for name in lab.spec.service_names[1:]:  # every service's check wants a recent drill of its own
            other = json.loads(dcctl(config, "--yes", "-o", "json", "drill", "-s", name, show=False).stdout)
            console.print(f"  drill of {name}: {other['outcome']}")

        problems += switchover_round_trip(lab, config)
        if len(lab.spec.service_names) > 1:
            problems += site_round_trip(lab, config)

        step("10. dcctl check again, the history and the reports")
        final = check_summary(dcctl(config, "-o", "json", "check", show=False))
        if final != 0:
            problems.append(f"the last dcctl check exited {final}")
        history(lab, config)
    finally:
        step("11. agents stopped, lab down")
        stop_agents(agents)
        lab_down(directory, progress=lambda text: console.print(f"  [dim]{text}[/]"))
    if problems:
        raise SystemExit("demo failed: " + "; ".join(problems))
    console.print(f"[bold green]demo done in {time.monotonic() - started:.1f} s[/]")


def rows_and_documents(lab: Lab, config: str) -> list[str]:
    with psycopg.connect(lab.spec.app_dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS enrolment (id bigserial PRIMARY KEY, student text NOT NULL, "
                     "school text NOT NULL, at timestamptz NOT NULL DEFAULT now())")
        conn.execute("INSERT INTO enrolment (student, school) SELECT 'student-' || n, 'school-' || (n % 40) "
                     "FROM generate_series(1, 1000) AS n")
    console.print(f"  [dim]the application connects through the PgBouncer at rabat: {application_dsn(lab)}[/]")
    with Writer(application_dsn(lab), rate=100, through_pooler=True) as writer:
        writer.wait_for_commits(10)
        docs = Documents(lab, PRIMARY_SITE, STANDBY_SITE, "شهادة-مدرسية")
        docs.write(300, folders=10, pace=0.005)
    console.print(f"  the application committed {len(writer.stats.acknowledged)} rows meanwhile")
    problems = docs.report()
    show_filesync_status(config)
    return problems


def application_dsn(lab: Lab) -> str:
    """The application's way in: the PgBouncer at rabat, which every switchover repoints."""
    return pgbouncer.app_dsn(lab.spec, PRIMARY_SITE)


def switchover_round_trip(lab: Lab, config: str) -> list[str]:
    """Switchover to backup and back under a writer; documents written on each new primary follow."""
    step("7. switchover to backup while the application keeps writing through PgBouncer (paused, repointed, "
         "resumed): the documents now flow back")
    with Writer(application_dsn(lab), rate=100, through_pooler=True) as writer:
        writer.wait_for_commits(50)
        summary(json.loads(dcctl(config, "--yes", "-o", "json", "switchover", "-s", SERVICE, show=False).stdout))
        writer.wait_for_commits(20)
        receipts = Documents(lab, STANDBY_SITE, PRIMARY_SITE, "إيصال-تسجيل")
        receipts.write(20, folders=1, pace=0.01)
        problems = receipts.report()
        show_filesync_status(config)

        step("8. switchover back to rabat, still under load: the documents flow from rabat again")
        summary(json.loads(dcctl(config, "--yes", "-o", "json", "switchover", "-s", SERVICE, "--to", PRIMARY_SITE,
                                  show=False).stdout))
        writer.wait_for_commits(50)
    lost = missing_ids(lab.spec.app_dsn(), writer.stats.acknowledged)
    console.print(f"  application: {len(writer.stats.acknowledged)} commits acknowledged, "
                  f"[bold]{len(lost)} lost[/], [bold]{writer.stats.errors} errors[/], longest pause "
                  f"{writer.stats.longest_gap():.3f} s, longest commit {max(writer.stats.commit_latencies):.3f} s")
    if lost:
        problems.append(f"{len(lost)} acknowledged commits lost")
    if writer.stats.errors:
        problems.append(f"the application saw {writer.stats.errors} errors through PgBouncer")
    again = Documents(lab, PRIMARY_SITE, STANDBY_SITE, "شهادة-مدرسية", first=301)
    again.write(10, folders=1, pace=0.01)
    problems += again.report()
    wait_filesync_settled(config)  # before the final check: the agents have seen the roles change
    return problems


def site_round_trip(lab: Lab, config: str) -> list[str]:
    """The whole datacenter there and back by the recovery plan, a writer on every service."""
    step("9. the whole datacenter: every service to backup by the recovery plan (identity first, then "
         "massar and portal at once), and back, an application writing to each")
    writers = {name: Writer(lab.spec.app_dsn(name), rate=50) for name in lab.spec.service_names}
    for writer in writers.values():
        writer.start()
    try:
        for writer in writers.values():
            writer.wait_for_commits(20)
        for target in (STANDBY_SITE, PRIMARY_SITE):
            dcctl(config, "--yes", "site", "switchover", "--to", target)
            for writer in writers.values():
                writer.wait_for_commits(20)
    finally:
        for writer in writers.values():
            writer.stop()
    problems = []
    for name, writer in writers.items():
        lost = missing_ids(lab.spec.app_dsn(name), writer.stats.acknowledged)
        console.print(f"  {name}: {len(writer.stats.acknowledged)} commits acknowledged, [bold]{len(lost)} lost[/], "
                      f"longest pause {writer.stats.longest_gap():.3f} s")
        if lost:
            problems.append(f"{name}: {len(lost)} acknowledged commits lost in the site switchovers")
    wait_filesync_settled(config)  # each agent has seen its site's roles change twice
    return problems


def history(lab: Lab, config: str) -> None:
    dcctl(config, "history")
    console.print("reports (JSON, Markdown, and HTML for drills):")
    for operation in sorted((lab.spec.state_dir / "operations").iterdir()):
        for name in ("report.html", "report.md"):
            if (operation / name).exists():
                console.print(f"  {operation / name}")
                break


def start_agents(lab: Lab) -> dict[str, AgentProcess]:
    agents = {}
    for site in SITES:
        agent = AgentProcess(lab.spec.config_path, site, lab.spec.root / f"agent-{site}.log").start()
        agents[site] = agent
        console.print(f"  {site}: `dcctl agent run --site {site}`, pid {agent.pid}, {agent.url}/metrics")
    return agents


def show_filesync_status(config: str, timeout: float = 15.0) -> None:
    """`dcctl filesync status` once the file sync has settled."""
    wait_filesync_settled(config, timeout)
    dcctl(config, "filesync", "status")


def wait_filesync_settled(config: str, timeout: float = 15.0) -> None:
    """Until every service's pushing agent reports nothing pending after a batch or a
    reconciliation (a new primary's agent starts with a reconciliation, which sends what is there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = json.loads(dcctl(config, "-o", "json", "filesync", "status", show=False, echo=False).stdout)
        stores = [store for service in report["services"] for store in service["stores"]]
        if stores and all(s["agent"] == "pushing" and s["pending"] == 0
                          and (s["last_batch_at"] or s["last_reconcile_at"]) for s in stores):
            return
        time.sleep(0.5)


def stop_agents(agents: dict[str, AgentProcess]) -> None:
    for site, agent in agents.items():
        pid, code = agent.pid, agent.stop()
        if code is not None:
            console.print(f"  [dim]agent {site} (pid {pid}) stopped, exit {code}[/]")


class Documents:
    """Scanned documents written into one site's store as the lab user (sites own their stores), a
    few KB each, with Arabic names, while a thread notes when each appears at the other site."""

    def __init__(self, lab: Lab, site: str, target: str, prefix: str, first: int = 1):
        self.lab, self.site, self.target, self.prefix, self.first = lab, site, target, prefix, first
        self.written: dict[str, tuple[float, bytes]] = {}  # relative path: (closed at, content)
        self.seen: dict[str, float] = {}  # relative path: when it appeared at the target
        self._done = threading.Event()
        user = pwd.getpwnam(lab.spec.user)
        self.uid, self.gid = user.pw_uid, user.pw_gid

    def root(self, site: str) -> Path:
        return self.lab.spec.store_dir(site, STORE)

    def write(self, count: int, folders: int, pace: float) -> None:
        rng = random.Random(self.first)
        watcher = threading.Thread(target=self._watch, args=(count,), daemon=True, name="demo-documents")
        watcher.start()
        began = time.monotonic()
        for n in range(self.first, self.first + count):
            folder = f"مدرسة-{n % folders + 1:02d}"
            relative = f"{folder}/{self.prefix}-{n:04d}.pdf"
            self._write_one(folder, relative, b"%PDF-1.4\n" + rng.randbytes(rng.randint(2048, 8192)))
            time.sleep(pace)
        size = sum(len(c) for _, c in self.written.values())
        console.print(f"  {count} documents ({size / 1024:.0f} KB) written at {self.site} in "
                      f"{time.monotonic() - began:.2f} s, e.g. {next(iter(self.written))}")
        watcher.join(ARRIVAL_TIMEOUT)
        self._done.set()

    def _write_one(self, folder: str, relative: str, content: bytes) -> None:
        directory = self.root(self.site) / folder
        if not directory.exists():
            directory.mkdir()
            os.chown(directory, self.uid, self.gid)
        with open(self.root(self.site) / relative, "wb") as fh:
            fh.write(content)
            os.fchown(fh.fileno(), self.uid, self.gid)
        self.written[relative] = (time.time(), content)

    def _watch(self, count: int) -> None:
        # rsync renames a file into place once complete, so a name that exists there is whole
        deadline = time.monotonic() + ARRIVAL_TIMEOUT
        while len(self.seen) < count and time.monotonic() < deadline and not self._done.is_set():
            for relative in list(self.written):
                if relative not in self.seen and (self.root(self.target) / relative).exists():
                    self.seen[relative] = time.time()
            time.sleep(0.005)

    def report(self) -> list[str]:
        """Print how many arrived, identical, and their lag; the problems found, if any."""
        identical = [r for r in self.seen if self._same(r)]
        if len(identical) < len(self.written):
            console.print(f"  [red]{len(self.written) - len(identical)} of {len(self.written)} documents not on "
                          f"{self.target} (or not identical) after {ARRIVAL_TIMEOUT:g} s[/]")
            return [f"documents written at {self.site} missing at {self.target}"]
        lags = sorted(self.seen[r] - self.written[r][0] for r in identical)
        console.print(f"  documents arrived {self.site} -> {self.target}: {len(identical)} of {len(self.written)}, "
                      f"identical; lag from close to arrival median {lags[len(lags) // 2]:.3f} s, "
                      f"max {lags[-1]:.3f} s")
        return []

    def _same(self, relative: str) -> bool:
        try:
            return (self.root(self.target) / relative).read_bytes() == self.written[relative][1]
        except OSError:
            return False


def check_summary(result: subprocess.CompletedProcess) -> int:
    report = json.loads(result.stdout)
    checks = [(service["service"], c) for service in report["services"] for c in service["checks"]]
    ok = sum(1 for _, c in checks if c["status"] == "OK")
    console.print(f"  exit {result.returncode} ({report['status']}): {ok} of {len(checks)} results OK "
                  f"({len(report['services'])} services)")
    for service, c in checks:
        if c["status"] != "OK":
            console.print(f"  {c['status']} {service} {c['name']}: {c['detail']}")
    return result.returncode


def summary(report: dict) -> None:
    observed = report["observed"]
    color = "green" if report["outcome"] == "success" else "red"
    line = f"  [{color}]{report['kind']} {report['outcome']}[/] in {report['wall_seconds']:.2f} s"
    if report["kind"] != "drill" and report.get("old_primary"):
        line += f": {report['old_primary']} -> {report['new_primary']}"
    if observed.get("rto_seconds") is not None:
        line += f"; time to ready (RTO) {observed['rto_seconds']:.3f} s"
    if observed.get("rpo_seconds") is not None:
        line += f"; data freshness (RPO) {observed['rpo_seconds']:.3f} s"
    if report.get("write_unavailability_seconds") is not None:
        line += f"; writes paused {report['write_unavailability_seconds']:.3f} s; data loss: {report['data_loss']}"
    console.print(line)
    for check in observed.get("checks", []):
        console.print(f"    {'PASS' if check['passed'] else 'FAIL'} {check['detail']}")
