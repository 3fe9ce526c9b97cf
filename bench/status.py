"""Measure `dcctl status` and `dcctl check` on a real lab: healthy, standby host unreachable, standby stopped.

Runs the real CLI as a subprocess, as an operator would, and times each run end to end
(interpreter start-up included). `status` is timed in all three cases, `check` when healthy
and with the standby host unreachable. Results are recorded in docs/benchmarks.md.

    .venv/bin/python -m bench.status [--runs 20] [--transport local|ssh|both] [--keep] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from bench.common import REPO, machine, scratch_lab
from dcctl.config import load_config
from dcctl.lab.faults import Tarpit
from dcctl.lab.lab import Lab
from dcctl.lab.layout import PRIMARY_SITE, STANDBY_SITE
from dcctl.lab.procs import free_port_block




def timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120)
    return time.perf_counter() - started, result


def status_runs(config: str, runs: int, check) -> list[float]:
    """Run `dcctl status -o json` `runs` times; `check(sites_by_name)` validates each report."""
    argv = [sys.executable, "-m", "dcctl", "-c", config, "status", "-o", "json"]
    times = []
    for _ in range(runs):
        seconds, result = timed(argv)
        if result.returncode != 0:
            raise SystemExit(f"dcctl status exited {result.returncode}:\n{result.stderr}{result.stdout}")
        report = json.loads(result.stdout)["services"][0]
        if report["primary"] != PRIMARY_SITE:
            raise SystemExit(f"expected primary {PRIMARY_SITE}, got {report['primary']!r}:\n{result.stdout}")
        check({s["site"]: s for s in report["sites"]})
        times.append(seconds)
    return times


CHECK_EXIT = {"OK": 0, "WARN": 1, "CRIT": 2, "UNKNOWN": 3}


def check_runs(config: str, runs: int, validate) -> list[float]:
    """Run `dcctl check -o json` `runs` times; `validate(checks)` validates each report.

    Exit 0-3 is the worst check (a fresh lab exits 3: no drill recorded yet, drill_age UNKNOWN; no
    agent runs here, so filesync_lag is UNKNOWN too).
    """
    argv = [sys.executable, "-m", "dcctl", "-c", config, "check", "-o", "json"]
    times = []
    for _ in range(runs):
        seconds, result = timed(argv)
        if result.returncode not in CHECK_EXIT.values() or "Traceback" in result.stderr:
            raise SystemExit(f"dcctl check exited {result.returncode}:\n{result.stderr}{result.stdout}")
        report = json.loads(result.stdout)
        if CHECK_EXIT[report["status"]] != result.returncode:
            raise SystemExit(f"dcctl check exited {result.returncode} with status {report['status']}")
        validate(report["services"][0]["checks"])
        times.append(seconds)
    return times


def checks_healthy(checks: list[dict]) -> None:
    bad = [c for c in checks if c["status"] != "OK" and c["name"] not in ("drill_age", "filesync_lag")]
    assert not bad, bad


def checks_standby_down(checks: list[dict]) -> None:
    backup = {c["name"]: c for c in checks if c["site"] == STANDBY_SITE and c["status"] in ("CRIT", "UNKNOWN")}
    assert backup.get("postgres_up", {}).get("status") == "CRIT", checks
    assert "unreachable" in backup["postgres_up"]["detail"] or "timeout" in backup["postgres_up"]["detail"], backup
    assert "replication_streaming" in backup, checks


def healthy(sites: dict) -> None:
    assert sites[STANDBY_SITE]["postgres"]["up"] is True, sites[STANDBY_SITE]
    assert sites[STANDBY_SITE]["streaming"] is True, sites[STANDBY_SITE]


def standby_down(sites: dict) -> None:
    backup = sites[STANDBY_SITE]
    assert backup["postgres"]["up"] is False and backup["postgres"]["error"], backup
    assert sites[PRIMARY_SITE]["role"] == "primary", sites[PRIMARY_SITE]


def tarpit_config(lab: Lab, port: int) -> str:
    """A copy of the lab's config whose standby site (PostgreSQL, and SSH if used) is the tarpit."""
    data = yaml.safe_load(lab.spec.config_path.read_text())
    site = data["services"]["massar"]["sites"][STANDBY_SITE]
    site["postgres"]["port"] = port
    if site["transport"]["type"] == "ssh":
        site["transport"]["port"] = port
    path = lab.spec.root / "dcctl-unreachable.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def timeouts(config_path: str) -> dict:
    config = load_config(config_path)
    site = next(iter(config.services.values())).sites[STANDBY_SITE]
    return {"site_timeout": config.site_timeout, "postgres_connect_timeout": site.postgres.connect_timeout,
            "ssh_connect_timeout": getattr(site.transport, "connect_timeout", None)}


def bench_transport(transport: str, runs: int, keep: bool) -> dict:
    out: dict = {"transport": transport, "cases": {}}  # (command, case) -> times
    with scratch_lab(f"dcctl-bench-{transport}-", keep, f"[{transport}] ") as directory:
        print(f"[{transport}] lab up in {directory}", file=sys.stderr)
        lab = Lab.up(directory, base_port=free_port_block(), transport=transport)
        config = str(lab.spec.config_path)
        out["timeouts"] = timeouts(config)
        out["postgres_version"] = subprocess.run([f"{lab.spec.bin_dir}/pg_ctl", "--version"], capture_output=True,
                                                 text=True, check=True).stdout.strip()

        print(f"[{transport}] healthy x{runs}", file=sys.stderr)
        out["cases"]["status", "healthy"] = status_runs(config, runs, healthy)
        out["cases"]["check", "healthy"] = check_runs(config, runs, checks_healthy)

        with Tarpit() as tarpit:
            print(f"[{transport}] standby host unreachable (tarpit :{tarpit.port}) x{runs}", file=sys.stderr)
            unreachable = tarpit_config(lab, tarpit.port)
            out["cases"]["status", "standby host unreachable"] = status_runs(unreachable, runs, standby_down)
            out["cases"]["check", "standby host unreachable"] = check_runs(unreachable, runs, checks_standby_down)

        print(f"[{transport}] standby PostgreSQL stopped x{runs}", file=sys.stderr)
        lab.stop(STANDBY_SITE)
        try:
            def refused(sites: dict) -> None:
                standby_down(sites)
                assert "refused" in sites[STANDBY_SITE]["postgres"]["error"], sites[STANDBY_SITE]

            out["cases"]["status", "standby PostgreSQL stopped"] = status_runs(config, runs, refused)
        finally:
            lab.start(STANDBY_SITE)
            lab.wait_streaming(STANDBY_SITE)
    return out


# What `dcctl status` pays before it asks anything: the interpreter, then the modules it imports.
# Start-up is timed with --help: --version also reports the versions of psycopg, paramiko, rsync
# and pg_dump, which imports the first two and runs the others.
STATUS_IMPORTS = "import dcctl.cli.main, dcctl.config, dcctl.topology, dcctl.status_report, dcctl.transport.local"
STARTUP_CASES = {
    "CLI start-up (--help)": ["-m", "dcctl", "--help"],
    "+ status imports (local)": ["-c", STATUS_IMPORTS],
    "+ status imports (ssh)": ["-c", STATUS_IMPORTS + ", paramiko"],
}


def startup_runs(runs: int) -> dict[str, list[float]]:
    out = {}
    for case, args in STARTUP_CASES.items():
        out[case] = []
        for _ in range(runs):
            seconds, result = timed([sys.executable, *args])
            if result.returncode != 0:
                raise SystemExit(f"python {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
            out[case].append(seconds)
    return out


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]  # nearest rank
    return {"runs": len(times), "median": statistics.median(times), "p90": p90, "max": ordered[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per case (default 20)")
    parser.add_argument("--transport", choices=["local", "ssh", "both"], default="both")
    parser.add_argument("--keep", action="store_true", help="leave the labs running")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures to FILE")
    args = parser.parse_args()

    transports = ["local", "ssh"] if args.transport == "both" else [args.transport]
    started = datetime.now(timezone.utc)
    results = [bench_transport(t, args.runs, args.keep) for t in transports]
    startup = startup_runs(args.runs)

    info = machine()
    print(f"date:     {started:%Y-%m-%d %H:%M} UTC")
    print(f"machine:  {info['nproc']} CPU(s), {info['cpu']}, Linux {info['kernel']}")
    print(f"python:   {info['python']}")
    print(f"postgres: {results[0].get('postgres_version', '?')}")
    for r in results:
        t = r["timeouts"]
        ssh = f", ssh connect_timeout {t['ssh_connect_timeout']:g} s" if t["ssh_connect_timeout"] else ""
        print(f"timeouts ({r['transport']}): site_timeout {t['site_timeout']:g} s, "
              f"postgres connect_timeout {t['postgres_connect_timeout']:g} s{ssh}")
    print()
    print(f"| {'transport':<9} | command | {'case':<26} | runs | median | p90    | max    |")
    print("|-----------|---------|----------------------------|------|--------|--------|--------|")
    rows = [(r["transport"], command, case, times) for r in results
            for (command, case), times in sorted(r["cases"].items(), key=lambda item: item[0][0] != "status")]
    rows += [("-", "-", case, times) for case, times in startup.items()]
    for transport, command, case, times in rows:
        s = summary(times)
        print(f"| {transport:<9} | {command:<7} | {case:<26} | {s['runs']:>4} | {s['median']:.3f}  | "
              f"{s['p90']:.3f}  | {s['max']:.3f}  |")

    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": started.isoformat(), "machine": info, "startup": startup,
            "results": [{**r, "cases": [{"command": c, "case": k, "times": v} for (c, k), v in r["cases"].items()]}
                        for r in results],
            "summary": [{"transport": t, "command": c, "case": k, **summary(times)} for t, c, k, times in rows],
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
