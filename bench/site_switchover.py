"""Measure `dcctl site switchover` on a lab of several services, a writer on each: per-service write
windows, lost commits, group durations and the site-level RTO, against single-service switchovers.

For each --services N: a lab with `--services N` (one PostgreSQL cluster per service per site, a
recovery plan of [identity], [massar, portal], [the others]), one Writer per service
(dcctl.lab.writer.Writer through the service's multi-host DSN, about --rate transactions per
second, reconnecting --retry-delay seconds after an error as applications do). Then --runs round
trips of `python -m dcctl -c LAB/dcctl.yaml --yes -o json site switchover --to backup` and back
to rabat, with --between seconds of writing before each, and afterwards --runs rounds of each
service switched alone (`dcctl switchover --service S`), there and back, for comparison. Per site switchover:

- per service, its write window as the application feels it: the longest gap between two
  acknowledged commits of its writer that overlaps the command (last commit before writes
  stopped -> first commit at the new primary);
- per group, its duration (the site journal's group_end `seconds`: each service from its plan to
  its report written), the slowest single-service switchover of the group's services counted the
  same way (the median of each one's, same direction: its journal's first entry to its report
  written): the target is a group at most 1.3x that, since its services run in parallel. Also the
  ratio against the singles' journals alone (`wall_seconds`, which ends before the report is
  written), and the spread of the group's services' write-window starts (how far apart they begin);
- the site-level RTO, twice: as the applications feel it, command start -> the last service's
  first commit at its new primary (from the writers: CLI start-up and the reconnect included),
  and as the site report states it, plan start -> the last service writable (its
  `site_rto_seconds`; target 1.5 s for 3 services in two groups); and the spread of the write
  windows' starts (how much they overlap);
- lost commits: after all runs, every acknowledged id of each writer must be on that service's
  final primary (dcctl.lab.writer.missing_ids).

Also the lab's own `lab up` time for each N. Results: docs/benchmarks.md.

    .venv/bin/python -m bench.site_switchover [--services 3,6] [--runs 3] [--rate 200]
                                              [--between 3] [--keep] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.common import machine, say, scratch_lab
from bench.switchover import acks_overlapping, longest_gap, run_cli
from dcctl.lab.lab import Lab
from dcctl.lab.layout import PRIMARY_SITE, STANDBY_SITE, port_span
from dcctl.lab.procs import free_port_block
from dcctl.lab.writer import Writer, missing_ids

TARGETS = {"group_vs_slowest_single": 1.3, "site_rto_3_services": 1.5}


def cli_report(config: str, *args: str, what: str) -> tuple[float, float, float, dict]:
    """Run a dcctl command with --yes -o json; (start epoch, end epoch, wall, its JSON report)."""
    started_at, ended_at, wall, result = run_cli(config, "--yes", "-o", "json", *args, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"{what} exited {result.returncode}:\n{result.stderr}{result.stdout}")
    report = json.loads(result.stdout)
    if report.get("outcome") != "success":
        raise SystemExit(f"{what}: outcome {report.get('outcome')}:\n{result.stderr}")
    return started_at, ended_at, wall, report


def write_window(writer: Writer, started_at: float, ended_at: float) -> dict[str, float]:
    """The writer's longest gap overlapping [started_at, ended_at]: its length, start and end (epoch)."""
    writer.wait_for_commits(20)
    acks = [t for _, t in list(writer.stats.acknowledged)]
    gap, last_before, first_after = longest_gap(acks_overlapping(acks, started_at, ended_at))
    return {"window": gap, "last_ack_before": last_before, "first_ack_after": first_after}


def site_journal(lab: Lab, report: dict, started_at: float) -> list[dict]:
    """The site operation's journal: the one its report names, else the newest site-* one since the start."""
    base = lab.spec.state_dir / "operations"
    op_id = report.get("operation") or report.get("site_operation")
    candidates = [base / op_id] if op_id else sorted(
        (p for p in base.iterdir() if p.name.startswith("site-") and p.stat().st_mtime >= started_at - 1),
        key=lambda p: p.stat().st_mtime)[-1:]
    for directory in candidates:
        path = directory / "journal.jsonl"
        if path.exists():
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return []


def groups_of(entries: list[dict]) -> list[dict]:
    """[{group, services, seconds}] from the site journal's group_start / group_end entries."""
    services = {e["group"]: e.get("services", []) for e in entries if e.get("event") == "group_start"}
    return [{"group": e["group"], "services": services.get(e["group"], []), "seconds": e.get("seconds"),
             "outcome": e.get("outcome")} for e in entries if e.get("event") == "group_end"]


def one_site_switchover(lab: Lab, writers: dict[str, Writer], to_site: str, index: int) -> dict:
    config = str(lab.spec.config_path)
    started_at, ended_at, wall, report = cli_report(config, "site", "switchover", "--to", to_site,
                                                    what=f"site switchover {index} to {to_site}")
    windows = {name: write_window(w, started_at, ended_at) for name, w in writers.items()}
    first_acks = [w["first_ack_after"] for w in windows.values()]
    last_acks = [w["last_ack_before"] for w in windows.values()]
    return {
        "index": index, "to": to_site, "operation": report.get("operation"), "wall": wall,
        "windows": {name: w["window"] for name, w in windows.items()},
        "window_starts": {name: w["last_ack_before"] for name, w in windows.items()},
        "site_rto_client": max(first_acks) - started_at,
        "window_start_spread": max(last_acks) - min(last_acks),
        "groups": groups_of(site_journal(lab, report, started_at)),
        "report_rto": report.get("rto_seconds", report.get("site_rto_seconds")),
    }


def single_switchovers(lab: Lab, writers: dict[str, Writer], between: float, rounds: int) -> dict[str, list[dict]]:
    """Each service switched alone, to the standby site and back, `rounds` times: its client window
    and operation time."""
    config = str(lab.spec.config_path)
    out: dict[str, list[dict]] = {name: [] for name in writers}
    for name, writer, to_site in ((n, w, t) for _ in range(rounds) for n, w in writers.items()
                                  for t in (STANDBY_SITE, PRIMARY_SITE)):
        time.sleep(between)
        started_at, ended_at, wall, report = cli_report(config, "switchover", "--service", name, "--to", to_site,
                                                        what=f"switchover of {name} to {to_site}")
        window = write_window(writer, started_at, ended_at)
        out[name].append({"to": to_site, "wall": wall, "operation_seconds": report["wall_seconds"],
                          "reported_seconds": reported_seconds(lab, report["operation"]),
                          "window": window["window"], "server_window": report.get("write_unavailability_seconds")})
        say(f"  single {name} -> {to_site}: window {window['window']:.3f} s, operation "
            f"{report['wall_seconds']:.3f} s, wall {wall:.3f} s")
    return out


def reported_seconds(lab: Lab, op_id: str) -> float:
    """A switchover from its journal's first entry to its report written (the last thing it does),
    as a site operation's group counts each of its services."""
    directory = lab.spec.state_dir / "operations" / op_id
    first = json.loads((directory / "journal.jsonl").read_text().splitlines()[0])["ts"]
    return (directory / "report.md").stat().st_mtime - first


def single_median(singles: dict[str, list[dict]], name: str, to_site: str,
                  measure: str = "reported_seconds") -> float | None:
    times = [s[measure] for s in singles.get(name, []) if s["to"] == to_site]
    return statistics.median(times) if times else None


def judge_groups(run: dict, singles: dict[str, list[dict]]) -> list[dict]:
    """Each group against the slowest of its services' single-service switchovers (the median of
    each service's, same direction), and the spread of its services' write-window starts."""
    judged = []
    for group in run["groups"]:
        def slowest(measure: str) -> float | None:
            return max((m for name in group["services"]
                        if (m := single_median(singles, name, run["to"], measure)) is not None), default=None)

        def ratio(single: float | None) -> float | None:
            return group["seconds"] / single if single and group["seconds"] is not None else None

        starts = [run["window_starts"][name] for name in group["services"] if name in run["window_starts"]]
        judged.append({**group, "slowest_single": slowest("reported_seconds"),
                       "ratio": ratio(slowest("reported_seconds")),
                       "ratio_to_journal": ratio(slowest("operation_seconds")),
                       "window_spread": max(starts) - min(starts) if starts else None})
    return judged


def bench_services(count: int, args) -> dict:
    out: dict = {"services": count, "runs": []}
    with scratch_lab(f"dcb-site-{count}-", args.keep, f"[{count}] ") as directory:
        started = time.perf_counter()
        lab = Lab.up(directory, base_port=free_port_block(port_span(count)), transport="local", services=count)
        out["lab_up_seconds"] = time.perf_counter() - started
        say(f"[{count}] lab up in {out['lab_up_seconds']:.1f} s: {', '.join(lab.spec.service_names)}")
        writers = {name: Writer(lab.spec.app_dsn(name), rate=args.rate, retry_delay=args.retry_delay)
                   for name in lab.spec.service_names}
        for writer in writers.values():
            writer.start()
        try:
            for writer in writers.values():
                writer.wait_for_commits(50)
            for index in range(1, args.runs + 1):
                for to_site in (STANDBY_SITE, PRIMARY_SITE):
                    time.sleep(args.between)
                    run = one_site_switchover(lab, writers, to_site, index)
                    say(f"[{count}] {index} -> {to_site}: site RTO {run['site_rto_client']:.3f} s, wall "
                        f"{run['wall']:.3f} s, windows " + ", ".join(f"{n} {w:.3f}" for n, w in run["windows"].items()))
                    out["runs"].append(run)
            out["singles"] = single_switchovers(lab, writers, args.between, args.runs)
            time.sleep(args.between)
        finally:
            for writer in writers.values():
                writer.stop()
        for run in out["runs"]:
            run["groups"] = judge_groups(run, out["singles"])
        out["acknowledged"] = {name: len(w.stats.acknowledged) for name, w in writers.items()}
        out["lost"] = {name: missing_ids(lab.spec.app_dsn(name), w.stats.acknowledged) for name, w in writers.items()}
        say(f"[{count}] lost commits: " + ", ".join(f"{n} {len(ids)} of {out['acknowledged'][n]}"
                                                    for n, ids in out["lost"].items()))
    return out


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_results(results: list[dict], args, started: datetime) -> None:
    info = machine()
    print(f"date:     {started:%Y-%m-%d %H:%M} UTC")
    print(f"machine:  {info['nproc']} CPU(s), {info['cpu']}, Linux {info['kernel']}, Python {info['python']}")
    print(f"load:     {args.load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    print(f"writers:  one per service, {args.rate:g} tps each; {args.runs} round trips per lab, {args.between:g} s "
          f"of writing before each switchover")
    for r in results:
        names = list(r["acknowledged"])
        print()
        print(f"## {r['services']} services (lab up {r['lab_up_seconds']:.1f} s)")
        print()
        print("| # | to     | site RTO (client) | site RTO (report) | wall  | window starts spread | "
              + " | ".join(names) + " |")
        print("|--:|--------|------------------:|------------------:|------:|---------------------:|"
              + "|".join("---:" for _ in names) + "|")
        for run in r["runs"]:
            report_rto = f"{run['report_rto']:17.3f}" if run["report_rto"] is not None else f"{'-':>17}"
            print(f"| {run['index']} | {run['to']:<6} | {run['site_rto_client']:17.3f} | {report_rto} | "
                  f"{run['wall']:.3f} | {run['window_start_spread']:20.3f} | "
                  + " | ".join(f"{run['windows'][n]:.3f}" for n in names) + " |")
        print()
        print("| # | to     | group | services | seconds | slowest single (to its report) | ratio | <= 1.3x | "
              "ratio to the single's journal | window spread |")
        print("|--:|--------|------:|----------|--------:|---------------:|------:|---------|------:|--------------:|")
        for run in r["runs"]:
            for g in run["groups"]:
                ratio = f"{g['ratio']:.2f}" if g["ratio"] is not None else "-"
                single = f"{g['slowest_single']:.3f}" if g["slowest_single"] is not None else "-"
                ok = verdict(g["ratio"] <= TARGETS["group_vs_slowest_single"]) if g["ratio"] is not None else "-"
                spread = f"{g['window_spread']:.3f}" if g["window_spread"] is not None else "-"
                to_journal = f"{g['ratio_to_journal']:.2f}" if g["ratio_to_journal"] is not None else "-"
                print(f"| {run['index']} | {run['to']:<6} | {g['group'] + 1:5d} | {', '.join(g['services'])} | "
                      f"{g['seconds'] or 0:.3f} | {single} | {ratio} | {ok} | {to_journal} | {spread} |")
        print()
        print("| service | single switchover: journal (median) | to its report (median) | window (median) |")
        print("|---------|------------------------------------:|-----------------------:|----------------:|")
        for name, singles in r["singles"].items():
            print(f"| {name} | {statistics.median(s['operation_seconds'] for s in singles):.3f} | "
                  f"{statistics.median(s['reported_seconds'] for s in singles):.3f} | "
                  f"{statistics.median(s['window'] for s in singles):.3f} |")
        rto = [run["site_rto_client"] for run in r["runs"]]
        plan_rto = [run["report_rto"] for run in r["runs"] if run["report_rto"] is not None]
        print()
        print(f"site RTO (client, command start -> last service's first commit): median "
              f"{statistics.median(rto):.3f} s, max {max(rto):.3f} s")
        if plan_rto:
            target = TARGETS["site_rto_3_services"]
            print(f"site RTO (report, plan start -> last service writable): median {statistics.median(plan_rto):.3f} s, "
                  f"max {max(plan_rto):.3f} s" + (f" (target <= {target} s: "
                                                   f"{verdict(statistics.median(plan_rto) <= target)})"
                                                   if r["services"] == 3 else ""))
        lost = sum(len(ids) for ids in r["lost"].values())
        print(f"lost commits: {lost} of {sum(r['acknowledged'].values())} acknowledged (target 0: {verdict(lost == 0)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", default="3,6", help="comma-separated service counts, one lab each (default 3,6)")
    parser.add_argument("--runs", type=int, default=3, help="site switchover round trips per lab (default 3)")
    parser.add_argument("--rate", type=float, default=200.0, help="each writer's transactions per second")
    parser.add_argument("--retry-delay", type=float, default=0.03,
                        help="seconds a writer waits after an error before reconnecting (default 0.03)")
    parser.add_argument("--between", type=float, default=3.0, help="seconds of writing before each switchover")
    parser.add_argument("--keep", action="store_true", help="leave the labs running")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures to FILE")
    args = parser.parse_args()

    counts = [int(n) for n in args.services.split(",") if n.strip()]
    started = datetime.now(timezone.utc)
    args.load_start = os.getloadavg()[0]
    results = [bench_services(n, args) for n in counts]
    print_results(results, args, started)
    if args.json:
        Path(args.json).write_text(json.dumps({"date": started.isoformat(), "machine": machine(), "args": vars(args),
                                               "load_end": os.getloadavg()[0], "results": results}, indent=2) + "\n")
    if any(ids for r in results for ids in r["lost"].values()):
        raise SystemExit("acknowledged commits were lost")


if __name__ == "__main__":
    main()
