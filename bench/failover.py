"""Measure `dcctl failover` after kill -9 of the primary's postmaster: command start -> first commit on the new primary.

Creates a lab and starts the lab's Writer (about 200 transactions per second through the
multi-host DSN, target_session_attrs=read-write, reconnecting on any error). Then, `--runs` times:
kill -9 the primary's postmaster (its PID read from postmaster.pid, as the tests do), and at once
run the real CLI, `python -m dcctl -c LAB/dcctl.yaml --yes -o json failover` (fencing included:
the old primary's site is reachable, so it is stopped in immediate mode and gets standby.signal).
Per run:

- first commit: from the start of the dcctl process to the first commit the writer gets
  acknowledged by the new primary (the first acknowledgement after dcctl asked for the promotion:
  the old primary was fenced before that, so nothing later can come from it; the id is checked to
  be on the new primary);
- exit: from the start of the process to its exit (failover ends after recording the generation);
- client gap: last commit acknowledged before the kill -> first one on the new primary;
- where the time goes: the report's steps, and what lies outside them (see bench/switchover.py).

Between runs the old primary is rejoined with `dcctl --yes -o json rejoin --site OLD` (untimed
for the target, its wall time is shown), so every failover starts from a whole, streaming lab and
the direction alternates. Commits acknowledged by the old primary that had not reached the standby
when it was killed are counted (asynchronous replication may lose them; that is what failover
reports as "possible" data loss).

By default this script makes itself the lab's child subreaper and reaps a killed postmaster at
once, as systemd or any ordinary init would. This sandbox's PID 1 reaps orphans only about once a
second, and until then the zombie's PID answers `kill -0`, which dcctl's stop script waits on.
`--no-reaper` measures that case. Results: docs/benchmarks.md.

    .venv/bin/python -m bench.failover [--runs 5] [--transport local|ssh|both] [--rate 200] [--between 3]
                                       [--no-reaper] [--keep] [--json FILE]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import statistics
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.common import machine, say, scratch_lab
from bench.report import print_run_header, print_step_medians
from bench.switchover import cli_json, journal_entries, other, overheads
from dcctl.lab import procs
from dcctl.lab.lab import Lab
from dcctl.lab.layout import PRIMARY_SITE
from dcctl.lab.procs import free_port_block
from dcctl.lab.writer import Writer, missing_ids

TARGET = 0.5  # seconds, local transport: dcctl start -> first commit on the new primary
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphaned descendants (the lab's postmasters: pg_ctl exits after starting them) become our
    children instead of PID 1's, so that a killed postmaster is reaped at once, as systemd would.

    In this sandbox PID 1 reaps orphans only about once a second: a kill -9'd postmaster stays a
    zombie that long, its PID still answers kill -0, and dcctl's stop script waits for it (see
    docs/benchmarks.md). `--no-reaper` measures that case.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_when_dead(pid: int) -> threading.Thread | None:
    """Reap `pid` as soon as it exits, if it is our child (we are its subreaper)."""
    def wait() -> None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    try:
        if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) != os.getpid():
            return None
    except (OSError, ValueError, IndexError):
        return None
    thread = threading.Thread(target=wait, daemon=True, name=f"reap-{pid}")
    thread.start()
    return thread


def present_ids(lab: Lab, ids: list[int]) -> set[int]:
    import psycopg

    with psycopg.connect(lab.spec.app_dsn(), connect_timeout=5, autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM dcctl_writer WHERE id = ANY(%s)", (ids,))}


def one_failover(lab: Lab, writer: Writer, index: int, primary: str, reaper: bool) -> dict:
    config = str(lab.spec.config_path)
    pid = lab.running(primary)
    if not pid:
        raise SystemExit(f"run {index}: no postmaster at site {primary}")
    acked_before = len(writer.stats.acknowledged)
    reaping = reap_when_dead(pid) if reaper else None
    if reaper and reaping is None:
        raise SystemExit(f"run {index}: the postmaster {pid} is not our child: the subreaper did not take it")
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    started_at, ended_at, wall, report = cli_json(config, "failover", what=f"failover {index}")
    if report["new_primary"] != other(primary):
        raise SystemExit(f"failover {index} promoted {report['new_primary']}, expected {other(primary)}")
    writer.wait_for_commits(20)
    observed = report["observed"]
    acks = list(writer.stats.acknowledged)
    first_id, first_at = next((i, t) for i, t in acks if t > observed["promoted_at"])
    if first_id not in present_ids(lab, [first_id]):
        raise SystemExit(f"failover {index}: commit {first_id} acknowledged after the promotion is not on the new "
                         f"primary")
    last_before_kill = max((t for _, t in acks if t <= killed_at), default=float("nan"))
    # Commits acknowledged by the old primary (before or just after the kill) that never reached the standby.
    around_kill = [(i, t) for i, t in acks[max(0, acked_before - 400):] if t < observed["promoted_at"]]
    lost = missing_ids(lab.spec.app_dsn(), around_kill)
    procs.wait_until(lambda: not procs.alive(pid), 10)
    entries = journal_entries(lab, report["operation"])
    fence_end = next(e["ts"] for e in entries if e["event"] == "step_end" and e["step"] == "fence_old_primary")
    return {
        "index": index, "from": primary, "to": report["new_primary"], "operation": report["operation"],
        "kill_to_start": started_at - killed_at,
        "first_commit": first_at - started_at, "exit": wall,
        "writable": observed["writable_at"] - started_at, "fenced": fence_end - started_at,
        "reconnect_after_writable": first_at - observed["writable_at"],
        "client_gap": first_at - last_before_kill,
        "lost_at_kill": lost, "fenced_by": observed.get("fenced_by"),
        "steps": {s["step"]: s["seconds"] for s in report["steps"]},
        "outside": overheads(lab, report, started_at, ended_at),
    }


def bench_transport(transport: str, args) -> dict:
    out: dict = {"transport": transport, "reaper": args.reaper, "runs": [], "rejoins": []}
    with scratch_lab(f"dcctl-bench-failover-{transport}-", args.keep, f"[{transport}] ") as directory:
        say(f"[{transport}] lab up in {directory}")
        lab = Lab.up(directory, base_port=free_port_block(), transport=transport)
        config = str(lab.spec.config_path)
        out["postgres_version"] = subprocess.run([f"{lab.spec.bin_dir}/pg_ctl", "--version"], capture_output=True,
                                                 text=True, check=True).stdout.strip()
        with Writer(lab.spec.app_dsn(), rate=args.rate, retry_delay=args.retry_delay) as writer:
            writer.wait_for_commits(50)
            primary = PRIMARY_SITE
            for index in range(1, args.runs + 1):
                time.sleep(args.between)
                run = one_failover(lab, writer, index, primary, args.reaper)
                say(f"[{transport}] {index}: {run['from']} killed -> {run['to']}: first commit "
                    f"{run['first_commit']:.3f} s after dcctl started, exit {run['exit']:.3f} s, client gap "
                    f"{run['client_gap']:.3f} s, {len(run['lost_at_kill'])} acknowledged commit(s) lost at the kill")
                out["runs"].append(run)
                _, _, rejoin_wall, rejoined = cli_json(config, "rejoin", "--site", primary,
                                                       what=f"rejoin {primary} after failover {index}")
                out["rejoins"].append({"site": primary, "wall": rejoin_wall,
                                       "diverged_commits": rejoined["observed"].get("diverged_commits"),
                                       "steps": {s["step"]: s["seconds"] for s in rejoined["steps"]}})
                say(f"[{transport}]    rejoin {primary}: {rejoin_wall:.3f} s "
                    f"(diverged commits {rejoined['observed'].get('diverged_commits')})")
                lab.wait_streaming(primary)
                primary = other(primary)
            writer.wait_for_commits(50)
        out["acknowledged"] = len(writer.stats.acknowledged)
        # Every commit acknowledged after the first failover's kill window must be on the final primary.
        lost_at_kills = {i for run in out["runs"] for i in run["lost_at_kill"]}
        out["missing_other"] = [i for i in missing_ids(lab.spec.app_dsn(), writer.stats.acknowledged)
                                if i not in lost_at_kills]
        say(f"[{transport}] {out['acknowledged']} commits acknowledged; {len(lost_at_kills)} lost at kills, "
            f"{len(out['missing_other'])} missing otherwise")
    return out


def print_results(results: list[dict], args, started: datetime) -> None:
    print_run_header(results, args, started, machine())
    print(f"writer:   {args.rate:g} tps target; {args.runs} failovers per transport, {args.between:g} s of writing "
          f"before each")
    print("reaping:  " + ("this script is the lab's subreaper and reaps a killed postmaster at once (as systemd "
                           "would)" if args.reaper else "killed postmasters are left to PID 1 (--no-reaper)"))
    print()
    for r in results:
        print(f"[{r['transport']}] per failover (seconds from the start of the dcctl process, except the gap)")
        print()
        print("| # | killed -> promoted | fenced | writable | first commit | exit  | client gap | lost at kill | "
              "rejoin after |")
        print("|--:|--------------------|-------:|---------:|-------------:|------:|-----------:|-------------:|"
              "-------------:|")
        for run, rejoin in zip(r["runs"], r["rejoins"]):
            print(f"| {run['index']} | {run['from']:>6} -> {run['to']:<8} | {run['fenced']:.3f}  | "
                  f"{run['writable']:.3f}    | {run['first_commit']:.3f}        | {run['exit']:.3f} | "
                  f"{run['client_gap']:.3f}      | {len(run['lost_at_kill']):>12} | {rejoin['wall']:.3f}        |")
        print()
    print("| transport | measure                                  | median | max   | target          |")
    print("|-----------|------------------------------------------|-------:|------:|-----------------|")
    for r in results:
        t = r["transport"]
        for key, label in (("kill_to_start", "kill -> dcctl started"), ("fenced", "start -> old primary fenced"),
                           ("writable", "start -> new primary writable"),
                           ("reconnect_after_writable", "  writable -> first commit (client)"),
                           ("first_commit", "start -> first commit on new primary"),
                           ("exit", "start -> command exit"), ("client_gap", "client gap (last ack -> first ack)")):
            values = [run[key] for run in r["runs"]]
            target = ""
            if key == "first_commit":
                ok = statistics.median(values) <= TARGET
                target = f"<= {TARGET:g}: {'met' if ok else 'MISSED'}" if t == "local" else "(local only)"
            print(f"| {t:<9} | {label:<40} | {statistics.median(values):.3f}  | {max(values):.3f} | {target:<15} |")
        walls = [x["wall"] for x in r["rejoins"]]
        print(f"| {t:<9} | {'rejoin between runs (not diverged)':<40} | {statistics.median(walls):.3f}  | "
              f"{max(walls):.3f} |                 |")
    print()
    transports = [r["transport"] for r in results]
    print_step_medians(results, transports, "exit", "Per step, median of the runs (seconds); then what lies outside the steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="failovers per transport (default 5)")
    parser.add_argument("--transport", choices=["local", "ssh", "both"], default="local")
    parser.add_argument("--rate", type=float, default=200.0, help="writer transactions per second (default 200)")
    parser.add_argument("--retry-delay", type=float, default=0.03,
                        help="seconds the writer waits after an error before reconnecting, as applications do "
                             "(default 0.03)")
    parser.add_argument("--between", type=float, default=3.0, help="seconds of writing before each failover")
    parser.add_argument("--no-reaper", dest="reaper", action="store_false",
                        help="leave killed postmasters to PID 1 (here: reaped only about once a second)")
    parser.add_argument("--keep", action="store_true", help="leave the labs running")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures to FILE")
    args = parser.parse_args()

    transports = ["local", "ssh"] if args.transport == "both" else [args.transport]
    if args.reaper:
        become_subreaper()
    started = datetime.now(timezone.utc)
    args.load_start = os.getloadavg()[0]
    results = [bench_transport(t, args) for t in transports]
    print_results(results, args, started)
    if args.json:
        Path(args.json).write_text(json.dumps({"date": started.isoformat(), "machine": machine(), "args": vars(args),
                                               "load_end": os.getloadavg()[0], "results": results}, indent=2) + "\n")
    if any(r["missing_other"] for r in results):
        raise SystemExit("commits acknowledged outside the kill windows are missing")


if __name__ == "__main__":
    main()
