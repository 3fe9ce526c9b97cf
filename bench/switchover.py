"""Measure `dcctl switchover` on a real lab with a writer running: write unavailability, lost commits, wall time.

Creates a lab, starts the lab's Writer (dcctl.lab.writer.Writer: sequential ids, one INSERT per
transaction, through the multi-host DSN with target_session_attrs=read-write, reconnecting on any
error) at about 200 transactions per second, then runs `--runs` switchovers alternating direction
with the real CLI, `python -m dcctl -c LAB/dcctl.yaml --yes -o json switchover`, with `--between`
seconds of writing before each. Per switchover:

- client gap: the longest time between two consecutive acknowledged commits that overlaps the
  command (the last commit acknowledged before writes stopped to the first one after), as the
  application feels it; it includes up to one writer period (5 ms at 200 tps);
- server window: the report's `write_unavailability_seconds` (writes stopped -> new primary writable);
- wall: the command from process start to exit (it exits once the old primary streams again);
- where the time goes: every step's seconds from the report, and what lies outside the steps
  (read from the operation's journal): CLI start-up, imports and role discovery before the journal
  starts; the lock; journaling between steps; lock release, report and exit after the last step.
  The client gap is split into writes stopped before the stop step began (last ack -> stop
  started), the server window, and the client's reconnect (new primary writable -> first ack).

After all runs: every acknowledged id must be on the final primary (dcctl.lab.writer.missing_ids).
Results: docs/benchmarks.md.

With --through-pooler the lab also runs one PgBouncer per site (`lab up --poolers`) and, beside
the direct run on the local transport, the same switchovers run with the application behind the
pooler (dcctl.lab.pooled_writer: short transactions on a few connections plus one long-lived
session): client-visible errors (target 0), lost commits (0), the longest commit latency and its
p99 among commits sent while the command ran (target: longest <= the direct client gap + 0.1 s).

    .venv/bin/python -m bench.switchover [--runs 5] [--transport local|ssh|both] [--rate 200]
                                        [--between 3] [--keep] [--json FILE] [--through-pooler]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.common import REPO, machine, say, scratch_lab
from bench.report import print_run_header, print_step_medians
from dcctl.lab.lab import Lab
from dcctl.lab.layout import PRIMARY_SITE, STANDBY_SITE
from dcctl.lab.procs import free_port_block
from dcctl.lab.writer import Writer, missing_ids

TARGETS = {"client_gap_median": 0.25, "client_gap_max": 0.40, "wall_median": 1.5}


def other(site: str) -> str:
    return STANDBY_SITE if site == PRIMARY_SITE else PRIMARY_SITE


def run_cli(config: str, *args: str, timeout: float = 180) -> tuple[float, float, float, subprocess.CompletedProcess]:
    """Run `python -m dcctl -c CONFIG ARGS`; returns (start epoch, end epoch, wall seconds, result)."""
    argv = [sys.executable, "-m", "dcctl", "-c", config, *args]
    started_at, started = time.time(), time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    wall = time.perf_counter() - started
    return started_at, started_at + wall, wall, result


def cli_json(config: str, *args: str, what: str) -> tuple[float, float, float, dict]:
    started_at, ended_at, wall, result = run_cli(config, "--yes", "-o", "json", *args)
    if result.returncode != 0:
        raise SystemExit(f"{what} exited {result.returncode}:\n{result.stderr}{result.stdout}")
    report = json.loads(result.stdout)
    if report["outcome"] != "success":
        raise SystemExit(f"{what}: outcome {report['outcome']}:\n{result.stderr}")
    return started_at, ended_at, wall, report


def journal_entries(lab: Lab, op_id: str) -> list[dict]:
    path = lab.spec.state_dir / "operations" / op_id / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def overheads(lab: Lab, report: dict, started_at: float, ended_at: float) -> dict[str, float]:
    """Where the wall time goes outside the steps, from the journal's own timestamps."""
    entries = journal_entries(lab, report["operation"])
    header = entries[0]["ts"]
    starts = [e["ts"] for e in entries if e["event"] == "step_start"]
    ends = [e["ts"] for e in entries if e["event"] in ("step_end", "step_fail")]
    step_sum = sum(s["seconds"] or 0.0 for s in report["steps"])
    return {
        "(before: start-up, imports, roles, plan)": header - started_at,
        "(lock, both sites)": starts[0] - header,
        "(journal between steps)": (ends[-1] - starts[0]) - step_sum,
        "(after: unlock, report, exit)": ended_at - ends[-1],
    }


def acks_overlapping(acks: list[float], start: float, end: float) -> list[float]:
    """The acknowledgement times from the last one before `start` to the first one after `end`."""
    before = [t for t in acks if t <= start]
    inside = [t for t in acks if start < t <= end]
    after = [t for t in acks if t > end]
    return before[-1:] + inside + after[:1]


def longest_gap(times: list[float]) -> tuple[float, float, float]:
    """(gap, last ack before it, first ack after it)."""
    return max(((b - a, a, b) for a, b in zip(times, times[1:])), default=(float("nan"), 0.0, 0.0))


def one_switchover(lab: Lab, writer: Writer, index: int) -> dict:
    config = str(lab.spec.config_path)
    errors_before = writer.stats.errors
    started_at, ended_at, wall, report = cli_json(config, "switchover", what=f"switchover {index}")
    writer.wait_for_commits(20)
    acks = [t for _, t in list(writer.stats.acknowledged)]
    gap, last_before, first_after = longest_gap(acks_overlapping(acks, started_at, ended_at))
    observed = report["observed"]
    return {
        "index": index, "from": report["old_primary"], "to": report["new_primary"], "operation": report["operation"],
        "wall": wall, "client_gap": gap, "server_window": report["write_unavailability_seconds"],
        "writer_errors": writer.stats.errors - errors_before,
        # the client gap, split: acks that stopped before the stop began, the window, the reconnect
        "stop_to_last_ack": last_before - observed["writes_stopped_at"],
        "reconnect_after_writable": first_after - observed["writable_at"],
        "steps": {s["step"]: s["seconds"] for s in report["steps"]},
        "outside": overheads(lab, report, started_at, ended_at),
        "operation_seconds": report["wall_seconds"],
    }


def bench_transport(transport: str, args) -> dict:
    out: dict = {"transport": transport, "runs": []}
    with scratch_lab(f"dcb-so-{transport}-", args.keep, f"[{transport}] ") as directory:
        say(f"[{transport}] lab up in {directory}")
        lab = Lab.up(directory, base_port=free_port_block(), transport=transport)
        out["postgres_version"] = subprocess.run([f"{lab.spec.bin_dir}/pg_ctl", "--version"], capture_output=True,
                                                 text=True, check=True).stdout.strip()
        with Writer(lab.spec.app_dsn(), rate=args.rate, retry_delay=args.retry_delay) as writer:
            writer.wait_for_commits(50)
            began = time.monotonic()
            primary = PRIMARY_SITE
            for index in range(1, args.runs + 1):
                time.sleep(args.between)
                run = one_switchover(lab, writer, index)
                if (run["from"], run["to"]) != (primary, other(primary)):
                    raise SystemExit(f"switchover {index} went {run['from']} -> {run['to']}, expected "
                                     f"{primary} -> {other(primary)}")
                primary = run["to"]
                say(f"[{transport}] {index}: {run['from']} -> {run['to']}: client gap {run['client_gap']:.3f} s, "
                    f"server window {run['server_window']:.3f} s, wall {run['wall']:.3f} s "
                    f"({run['writer_errors']} writer errors)")
                out["runs"].append(run)
            time.sleep(args.between)
            elapsed = time.monotonic() - began
        acknowledged = writer.stats.acknowledged
        out["acknowledged"] = len(acknowledged)
        out["rate"] = len(acknowledged) / elapsed if elapsed else 0.0
        out["lost"] = missing_ids(lab.spec.app_dsn(), acknowledged)
        out["errors"] = writer.stats.errors
        latencies = sorted(writer.stats.commit_latencies)
        out["commit_latency_median"] = statistics.median(latencies) if latencies else None
        say(f"[{transport}] {len(acknowledged)} commits acknowledged, {len(out['lost'])} lost")
    return out


def bench_through_pooler(args) -> dict:
    """The same switchovers with the application behind the lab's PgBouncer at the primary site."""
    from dcctl.lab import pgbouncer
    from dcctl.lab.pooled_writer import PooledWriter

    out: dict = {"transport": "local, through the pooler", "runs": []}
    with scratch_lab("dcb-so-pooler-", args.keep, "[pooler] ") as directory:
        say(f"[pooler] lab up in {directory}, with poolers")
        lab = Lab.up(directory, base_port=free_port_block(), transport="local")
        pgbouncer.enable(lab)
        config = str(lab.spec.config_path)
        writer = PooledWriter(pgbouncer.app_dsn(lab.spec, PRIMARY_SITE), rate=args.rate, connections=4)
        with writer:
            writer.wait_for_commits(50)
            for index in range(1, args.runs + 1):
                time.sleep(args.between)
                errors_before = len(writer.stats.errors)
                started_at, ended_at, wall, report = cli_json(config, "switchover", what=f"switchover {index}")
                writer.wait_for_commits(20)
                run = {"index": index, "from": report["old_primary"], "to": report["new_primary"], "wall": wall,
                       "errors": len(writer.stats.errors) - errors_before,
                       "longest_commit": writer.stats.longest_commit(started_at, ended_at),
                       "p99_commit": writer.stats.p99(started_at, ended_at),
                       "server_window": report["write_unavailability_seconds"],
                       "steps": {s["step"]: s["seconds"] for s in report["steps"]}}
                say(f"[pooler] {index}: {run['from']} -> {run['to']}: longest commit {run['longest_commit']:.3f} s, "
                    f"p99 {run['p99_commit']:.3f} s, {run['errors']} client errors, wall {wall:.3f} s")
                out["runs"].append(run)
            time.sleep(args.between)
        out["acknowledged"] = len(writer.stats.acknowledged)
        out["lost"] = missing_ids(lab.spec.app_dsn(), writer.stats.acknowledged)
        out["errors"] = writer.stats.errors
    return out


def print_pooler_results(pooled: dict, direct: dict | None) -> None:
    print("Through the pooler (PgBouncer paused, repointed, resumed) beside the direct run")
    print()
    print("| # | direction        | longest commit | p99 commit | client errors | wall  |")
    print("|--:|------------------|---------------:|-----------:|--------------:|------:|")
    for run in pooled["runs"]:
        print(f"| {run['index']} | {run['from']:>6} -> {run['to']:<6} | {run['longest_commit']:14.3f} | "
              f"{run['p99_commit']:10.3f} | {run['errors']:13d} | {run['wall']:.3f} |")
    print()
    longest = max(run["longest_commit"] for run in pooled["runs"])
    print(f"pooler: longest commit {longest:.3f} s (median of runs "
          f"{statistics.median(r['longest_commit'] for r in pooled['runs']):.3f} s), "
          f"{len(pooled['errors'])} client errors, {len(pooled['lost'])} of {pooled['acknowledged']} commits lost")
    if direct is not None:
        gaps = [r["client_gap"] for r in direct["runs"]]
        errors = sum(r["writer_errors"] for r in direct["runs"])
        print(f"direct: client gap median {statistics.median(gaps):.3f} s, max {max(gaps):.3f} s; {errors} client "
              f"errors (each one a reconnect), {len(direct['lost'])} lost")
        print(f"target: 0 errors and longest commit <= direct max gap + 0.1 s = {max(gaps) + 0.1:.3f} s: "
              f"{verdict(not pooled['errors'] and longest <= max(gaps) + 0.1)}")
    print()


def med_max(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), max(values)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_results(results: list[dict], args, started: datetime) -> None:
    print_run_header(results, args, started, machine())
    print(f"writer:   {args.rate:g} tps target; {args.runs} switchovers per transport, alternating, "
          f"{args.between:g} s of writing before each")
    print()
    for r in results:
        print(f"[{r['transport']}] per switchover (seconds)")
        print()
        print("| # | direction        | client gap | server window | wall  | writer errors |")
        print("|--:|------------------|-----------:|--------------:|------:|--------------:|")
        for run in r["runs"]:
            print(f"| {run['index']} | {run['from']:>6} -> {run['to']:<6} | {run['client_gap']:10.3f} | "
                  f"{run['server_window']:13.3f} | {run['wall']:.3f} | {run['writer_errors']:13d} |")
        print()
    print("| transport | measure                          | median | max   | target         |")
    print("|-----------|----------------------------------|-------:|------:|----------------|")
    for r in results:
        runs = r["runs"]
        gap_med, gap_max = med_max([x["client_gap"] for x in runs])
        win_med, win_max = med_max([x["server_window"] for x in runs])
        wall_med, wall_max = med_max([x["wall"] for x in runs])
        t = r["transport"]
        gap_ok = gap_med <= TARGETS["client_gap_median"] and gap_max <= TARGETS["client_gap_max"]
        print(f"| {t:<9} | write unavailability (client)    | {gap_med:.3f}  | {gap_max:.3f} | "
              f"<= 0.25 / 0.40: {verdict(gap_ok)} |")
        print(f"| {t:<9} | write unavailability (server)    | {win_med:.3f}  | {win_max:.3f} |                |")
        for key, label in (("stop_to_last_ack", "  client: stop begins -> last ack"),
                           ("reconnect_after_writable", "  client: writable -> first ack")):
            m, x = med_max([run[key] for run in runs])
            print(f"| {t:<9} | {label:<32} | {m:.3f}  | {x:.3f} |                |")
        print(f"| {t:<9} | command wall time                | {wall_med:.3f}  | {wall_max:.3f} | "
              f"<= 1.5: {verdict(wall_med <= TARGETS['wall_median'])}      |")
        print(f"| {t:<9} | lost commits (of {r['acknowledged']:>6})           | {len(r['lost']):>6} |       | "
              f"0: {verdict(not r['lost'])}          |")
    print()
    transports = [r["transport"] for r in results]
    print_step_medians(results, transports, "wall", "Per step, median of the runs (seconds); steps in playbook order, then what lies outside them")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="switchovers per transport (default 5)")
    parser.add_argument("--transport", choices=["local", "ssh", "both"], default="both")
    parser.add_argument("--rate", type=float, default=200.0, help="writer transactions per second (default 200)")
    parser.add_argument("--retry-delay", type=float, default=0.03,
                        help="seconds the writer waits after an error before reconnecting, as applications do "
                             "(default 0.03)")
    parser.add_argument("--between", type=float, default=3.0, help="seconds of writing before each switchover")
    parser.add_argument("--keep", action="store_true", help="leave the labs running")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures to FILE")
    parser.add_argument("--through-pooler", action="store_true",
                        help="also run the switchovers with the application behind PgBouncer (local transport; "
                             "the direct run is local too unless --transport says otherwise)")
    args = parser.parse_args()

    transports = ["local", "ssh"] if args.transport == "both" else [args.transport]
    if args.through_pooler and args.transport == "both":
        transports = ["local"]
    started = datetime.now(timezone.utc)
    args.load_start = os.getloadavg()[0]
    results = [bench_transport(t, args) for t in transports]
    print_results(results, args, started)
    pooled = None
    if args.through_pooler:
        pooled = bench_through_pooler(args)
        direct = next((r for r in results if r["transport"] == "local"), None)
        print_pooler_results(pooled, direct)
        results.append(pooled)
    if args.json:
        Path(args.json).write_text(json.dumps({"date": started.isoformat(), "machine": machine(), "args": vars(args),
                                               "load_end": os.getloadavg()[0], "results": results}, indent=2) + "\n")
    if any(r["lost"] for r in results):
        raise SystemExit("acknowledged commits were lost")
    if pooled is not None and pooled["errors"]:
        raise SystemExit("clients behind the pooler saw errors")


if __name__ == "__main__":
    main()
