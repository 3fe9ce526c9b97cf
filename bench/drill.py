"""Measure `dcctl drill` (non-disruptive) on a real lab, the production writer beside it, and the README demo.

Three parts, each on fresh labs (local transport), all through the real CLI in a subprocess:

1. Drill wall time, for each pgbench scale (10 and 100 by default): a lab is created, the app
   database `massar` is loaded with `pgbench -i -q -s N` (as the PostgreSQL superuser over
   127.0.0.1 with the lab's pgpass), the standby is waited on until it has replayed everything,
   the primary is checkpointed and `sync` run (untimed). Then `--runs` times, back to back:
   `python -m dcctl -c LAB/dcctl.yaml --yes -o json drill`, timed end to end. From its JSON report:
   the steps copy (copy_standby), start (start_copy), promote (promote_copy), checks (verify) and
   clean-up (cleanup), the RTO it reports (observed.rto_seconds), and what lies outside those five
   (start-up, imports and role discovery before the journal; preflight; leftovers; lock; verdict;
   report and exit), read from the operation's journal.
2. The production writer's commit latency, at the largest scale: the lab's Writer
   (dcctl.lab.writer.Writer, one INSERT per transaction through the multi-host DSN) at `--rate`
   (200) tps, measured over a fixed `--window` (20 s) with no drill, then over the same window while
   drills run back to back (a new drill starts as soon as the previous one and its status check end;
   the last one may run past the window, and the writer keeps going until it ends, but only the
   window is counted). `--rounds` (3) such pairs, alternating. Commit latency is the time
   `execute("INSERT ...")` takes in autocommit (the writer's stats.commit_latencies), so it
   includes the WAL flush on the primary. Latencies during the drills are also split by the drill
   step they fell in.
3. `python -m dcctl lab demo --dir TMP --base-port FREE`, `--demo-runs` (3) times, end to end, with
   the time of each of its numbered steps (read from its output as it arrives).

After every drill: `dcctl status -o json` must show the same primary (rabat), the backup a standby
that streams from the same upstream on the same timeline, its slot active; the two postmasters must
have the same pids, the standby's WAL receiver the same pid (replication was never interrupted),
the drill port must be free and the scratch directory gone. Any difference stops the benchmark.

    .venv/bin/python -m bench.drill [--scales 10,100] [--runs 5] [--rate 200] [--window 20]
                                   [--rounds 3] [--demo-runs 3] [--max-rate-mb MB] [--pacing even|server] [--skip-latency]
                                   [--skip-demo] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.common import REPO, machine, new_root, say, scratch_lab
from bench.workload import load_pgbench
from dcctl.lab import procs
from dcctl.lab.lab import Lab, lab_down
from dcctl.lab.layout import APP_DATABASE, PRIMARY_SITE, STANDBY_SITE
from dcctl.lab.procs import free_port_block
from dcctl.lab.writer import Writer

TARGETS = {"drill_wall_scale10": 10.0, "p99_ratio": 2.0, "demo": 60.0}
PARTS = [("copy_standby", "copy"), ("start_copy", "start"), ("promote_copy", "promote"), ("verify", "checks"),
         ("cleanup", "clean-up")]
DRILL_PORT_OFFSET = 6  # the lab's generated config puts drill.port at base_port + 6


def remove_root(root: Path) -> None:
    try:
        root.rmdir()
    except OSError:
        pass


# ---- the lab ------------------------------------------------------------------------------------


def settle(lab: Lab) -> None:
    """The standby has replayed all the primary's WAL; the primary has checkpointed; dirty pages are flushed."""
    with lab.connect(PRIMARY_SITE) as conn:
        target = conn.execute("SELECT pg_catalog.pg_current_wal_lsn()").fetchone()[0]
        conn.execute("CHECKPOINT")
    with lab.connect(STANDBY_SITE) as conn:
        def replayed() -> bool:
            return conn.execute("SELECT pg_catalog.pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]

        if not procs.wait_until(replayed, 300, interval=0.1):
            raise SystemExit("the standby did not replay the load within 300 s")
    subprocess.run(["sync"], check=True)


def database_bytes(lab: Lab) -> int:
    with lab.connect(PRIMARY_SITE) as conn:
        return conn.execute("SELECT pg_catalog.pg_database_size(%s)", (APP_DATABASE,)).fetchone()[0]


def postgres_version(lab: Lab) -> str:
    with lab.connect(PRIMARY_SITE) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


# ---- production unchanged -----------------------------------------------------------------------


def run_cli(config: str, *args: str, timeout: float = 600) -> tuple[float, float, subprocess.CompletedProcess]:
    """(start epoch, wall seconds, result) of `python -m dcctl -c CONFIG ARGS`."""
    argv = [sys.executable, "-m", "dcctl", "-c", config, *args]
    started_at, started = time.time(), time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    return started_at, time.perf_counter() - started, result


def production(lab: Lab) -> dict:
    """What a drill must not change: roles, replication (status -o json), postmasters, the WAL receiver."""
    _, _, result = run_cli(str(lab.spec.config_path), "status", "-o", "json", timeout=60)
    if result.returncode != 0:
        raise SystemExit(f"dcctl status exited {result.returncode}:\n{result.stderr}{result.stdout}")
    service = json.loads(result.stdout)["services"][0]
    sites = {s["site"]: s for s in service["sites"]}
    standby = sites[STANDBY_SITE]
    with lab.connect(STANDBY_SITE) as conn:
        receiver = conn.execute("SELECT pid, status FROM pg_catalog.pg_stat_wal_receiver").fetchone()
    return {
        "primary": service["primary"], "primaries": service["primaries"],
        "roles": {name: s["role"] for name, s in sites.items()},
        "standby_streaming": standby["streaming"], "standby_upstream": standby["upstream"],
        "timelines": {name: s["timeline"] for name, s in sites.items()},
        "slot": {k: (standby.get("slot") or {}).get(k) for k in ("name", "exists", "active")},
        "postmaster_pids": {site: lab.running(site) for site in (PRIMARY_SITE, STANDBY_SITE)},
        "wal_receiver": list(receiver) if receiver else None,
    }


def check_unchanged(lab: Lab, baseline: dict, what: str) -> dict:
    now = production(lab)
    if now != baseline:
        raise SystemExit(f"{what}: production changed:\n  before {baseline}\n  after  {now}")
    port = lab.spec.base_port + DRILL_PORT_OFFSET
    if not procs.port_free(port):
        raise SystemExit(f"{what}: the drill port {port} is still in use")
    scratch = lab.spec.site_dir(STANDBY_SITE) / "dcctl-state" / "drill"
    if scratch.exists() and any(scratch.iterdir()):
        raise SystemExit(f"{what}: the drill left {sorted(p.name for p in scratch.iterdir())} in {scratch}")
    return now


def expect_healthy(baseline: dict) -> None:
    ok = (baseline["primary"] == PRIMARY_SITE and baseline["roles"][STANDBY_SITE] == "standby"
          and baseline["standby_streaming"] is True and baseline["slot"]["active"] is True
          and baseline["wal_receiver"] and baseline["wal_receiver"][1] == "streaming")
    if not ok:
        raise SystemExit(f"the lab is not healthy before the drills: {baseline}")


# ---- one drill ----------------------------------------------------------------------------------


def journal_entries(lab: Lab, op_id: str) -> list[dict]:
    path = lab.spec.state_dir / "operations" / op_id / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def one_drill(lab: Lab, baseline: dict, what: str) -> dict:
    started_at, wall, result = run_cli(str(lab.spec.config_path), "--yes", "-o", "json", "drill")
    ended_at = started_at + wall
    if result.returncode != 0:
        raise SystemExit(f"{what}: dcctl drill exited {result.returncode}:\n{result.stderr}{result.stdout}")
    report = json.loads(result.stdout)
    if report["outcome"] != "success" or report["observed"].get("verdict") != "passed":
        raise SystemExit(f"{what}: outcome {report['outcome']}:\n{result.stderr}")
    check_unchanged(lab, baseline, what)
    entries = journal_entries(lab, report["operation"])
    header = entries[0]["ts"]
    steps = {s["step"]: s["seconds"] for s in report["steps"]}
    step_times = {}  # step -> (start epoch, end epoch), from the journal
    for entry in entries:
        if entry["event"] == "step_start":
            step_times[entry["step"]] = [entry["ts"], None]
        elif entry["event"] in ("step_end", "step_fail"):
            step_times[entry["step"]][1] = entry["ts"]
    last_end = max(t[1] for t in step_times.values())
    observed = report["observed"]
    return {
        "operation": report["operation"], "wall": wall, "started_at": started_at, "ended_at": ended_at,
        "steps": steps, "step_times": step_times,
        "parts": {label: steps[name] for name, label in PARTS},
        "rto": observed["rto_seconds"], "copy_bytes": observed.get("copy_bytes"),
        "rpo_seconds": observed.get("rpo_seconds"),
        "outside": {
            "before the journal (start-up, imports, roles, plan)": header - started_at,
            "preflight + leftovers + hooks + verdict": sum(v or 0.0 for k, v in steps.items()
                                                          if k not in dict(PARTS)),
            "lock, journal between steps": (last_end - header) - sum(v or 0.0 for v in steps.values()),
            "after (unlock, report, exit)": ended_at - last_end,
        },
    }


def set_drill(lab: Lab, **settings) -> None:
    """drill.<key> in the lab's config, e.g. max_rate_mb (the copy's speed limit, which sets its cost
    to the writer) or pacing (even, or the server's bursts)."""
    import yaml

    data = yaml.safe_load(lab.spec.config_path.read_text())
    for service in data["services"].values():
        service.setdefault("drill", {}).update(settings)
    lab.spec.config_path.write_text(yaml.safe_dump(data, sort_keys=False))


def bench_scale(scale: int, args, latency: bool) -> dict:
    out: dict = {"scale": scale, "runs": []}
    with scratch_lab(f"dcctl-bench-drill-s{scale}-") as directory:
        base_port = free_port_block()
        say(f"[scale {scale}] lab up in {directory} (ports {base_port}..{base_port + 7})")
        lab = Lab.up(directory, base_port=base_port, transport="local")
        chosen = {key: value for key, value in (("max_rate_mb", args.max_rate_mb), ("pacing", args.pacing))
                  if value is not None}
        if chosen:
            set_drill(lab, **chosen)
        out["postgres_version"] = postgres_version(lab)
        say(f"[scale {scale}] pgbench -i -q -s {scale}")
        out["load_seconds"] = load_pgbench(lab, scale)
        settle(lab)
        out["database_bytes"] = database_bytes(lab)
        baseline = production(lab)
        expect_healthy(baseline)
        for index in range(1, args.runs + 1):
            run = one_drill(lab, baseline, f"scale {scale} drill {index}")
            out["runs"].append(run)
            say(f"[scale {scale}] drill {index}: wall {run['wall']:.2f} s, rto {run['rto']:.3f} s, "
                + ", ".join(f"{k} {v:.2f}" for k, v in run["parts"].items()))
        if latency:
            out["latency"] = [latency_round(lab, baseline, args, r) for r in range(1, args.rounds + 1)]
    return out


# ---- the writer beside the drills ---------------------------------------------------------------


def window_latencies(writer: Writer, start: float, end: float) -> list[tuple[float, float]]:
    """(ack epoch, latency) of the commits acknowledged within [start, end]; read after the writer stopped."""
    pairs = zip((t for _, t in writer.stats.acknowledged), writer.stats.commit_latencies)
    return [(t, lat) for t, lat in pairs if start <= t <= end]


def latency_round(lab: Lab, baseline: dict, args, index: int) -> dict:
    dsn = lab.spec.app_dsn()
    say(f"[latency {index}] writer {args.rate:g} tps, {args.window:g} s without a drill")
    with Writer(dsn, rate=args.rate) as writer:
        writer.wait_for_commits(50)
        start = time.time()
        time.sleep(args.window)
    without = window_latencies(writer, start, start + args.window)
    errors_without = writer.stats.errors

    say(f"[latency {index}] writer {args.rate:g} tps, {args.window:g} s with drills back to back")
    drills = []
    with Writer(dsn, rate=args.rate) as writer:
        writer.wait_for_commits(50)
        start = time.time()
        while time.time() < start + args.window:
            drills.append(one_drill(lab, baseline, f"latency round {index} drill {len(drills) + 1}"))
        writer.wait_for_commits(20)
    during = window_latencies(writer, start, start + args.window)
    errors_during = writer.stats.errors
    # which drill step each commit of the window was acknowledged in
    by_step: dict[str, list[float]] = {}
    for t, lat in during:
        where = "between drills (status check, start-up, report)"
        for run in drills:
            for step, (began, ended) in run["step_times"].items():
                if began <= t <= ended:
                    where = dict(PARTS).get(step, "other steps")
        by_step.setdefault(where, []).append(lat)
    covered = sum(max(0.0, min(r["ended_at"], start + args.window) - max(r["started_at"], start)) for r in drills)
    copying = sum(max(0.0, min(r["step_times"]["copy_standby"][1], start + args.window)
                      - max(r["step_times"]["copy_standby"][0], start)) for r in drills)
    say(f"[latency {index}] {len(drills)} drills; p99 without {p(sorted(x for _, x in without), 99) * 1000:.2f} ms, "
        f"during {p(sorted(x for _, x in during), 99) * 1000:.2f} ms")
    return {"round": index, "without": [x for _, x in without], "during": [x for _, x in during],
            "errors_without": errors_without, "errors_during": errors_during, "drills": len(drills),
            "drill_walls": [r["wall"] for r in drills], "window_in_drills": covered, "window_copying": copying,
            "by_step": by_step}


def p(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted list."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 100)) - 1))]


# ---- the demo -----------------------------------------------------------------------------------

RULE = re.compile(r"─+ (\d)\. (.*?) ─")


def one_demo(index: int) -> dict:
    root = new_root("dcctl-bench-demo-")
    directory = root / "demo"
    base_port = free_port_block()
    argv = [sys.executable, "-m", "dcctl", "lab", "demo", "--dir", str(directory), "--base-port", str(base_port)]
    marks: list[tuple[str, float]] = []
    lines = []
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                                env=dict(os.environ, COLUMNS="200"))
        for line in proc.stdout:
            now = time.perf_counter() - started
            lines.append(line.rstrip("\n"))
            match = RULE.search(line)
            if match:
                marks.append((f"{match.group(1)}. {match.group(2).split(':')[0]}", now))
        code = proc.wait(timeout=600)
        wall = time.perf_counter() - started
    finally:
        if (directory / "lab.json").exists():
            say(f"[demo {index}] the demo left its lab: lab down")
            lab_down(directory)
        if directory.exists() and not any(directory.iterdir()):
            directory.rmdir()
        remove_root(root)
    text = "\n".join(lines)
    done = re.search(r"demo done in ([\d.]+) s", text)
    if code != 0 or not done:
        raise SystemExit(f"demo {index} exited {code}:\n{text}")
    lost = re.search(r"(\d+) lost", text)
    if not lost or lost.group(1) != "0":
        raise SystemExit(f"demo {index}: commits lost:\n{text}")
    steps = {name: (marks[i + 1][1] if i + 1 < len(marks) else wall) - at for i, (name, at) in enumerate(marks)}
    steps["(start-up before step 1)"] = marks[0][1] if marks else wall
    say(f"[demo {index}] {wall:.2f} s (the demo says {done.group(1)} s)")
    return {"wall": wall, "reported": float(done.group(1)), "steps": steps}


# ---- output -------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def fmt(x: float) -> str:
    return f"{x:.2f}"


def print_results(results: list[dict], demos: list[dict], args, started: datetime, date_text: str) -> None:
    info = machine()
    print(f"date:     {date_text} (`date`); started {started:%Y-%m-%d %H:%M:%S} UTC")
    print(f"machine:  {info['nproc']} CPU(s), {info['cpu']}, Linux {info['kernel']}, Python {info['python']}")
    print(f"postgres: {results[0].get('postgres_version', '?') if results else '?'}")
    print(f"load:     {' '.join(f'{x:.2f}' for x in os.getloadavg())} (load averages at the end)")
    print()
    for r in results:
        print(f"scale {r['scale']}: database {r['database_bytes'] / 1e6:.0f} MB, loaded in {r['load_seconds']:.1f} s; "
              f"copies {statistics.median(x['copy_bytes'] for x in r['runs']) / 1e6:.0f} MB")
    print()
    print("Non-disruptive drill, seconds: median (max) of the runs")
    print()
    head = ["copy", "start", "promote", "checks", "clean-up", "other", "RTO", "wall"]
    print("| scale | runs | " + " | ".join(head) + " | target |")
    print("|------:|-----:|" + "|".join("------:" for _ in head) + "|--------|")
    for r in results:
        runs = r["runs"]
        cols = {label: [x["parts"][label] for x in runs] for _, label in PARTS}
        cols["other"] = [sum(x["outside"].values()) for x in runs]
        cols["RTO"] = [x["rto"] for x in runs]
        cols["wall"] = [x["wall"] for x in runs]
        target = "-"
        if r["scale"] == 10:
            target = f"wall <= 10: {verdict(max(cols['wall']) <= TARGETS['drill_wall_scale10'])}"
        print(f"| {r['scale']:>5} | {len(runs):>4} | " + " | ".join(
            f"{fmt(statistics.median(cols[h]))} ({fmt(max(cols[h]))})" for h in head) + f" | {target} |")
    print()
    print("'other', median (seconds)")
    print()
    print("| scale | " + " | ".join(results[0]["runs"][0]["outside"]) + " |")
    print("|------:|" + "|".join("------:" for _ in results[0]["runs"][0]["outside"]) + "|")
    for r in results:
        print(f"| {r['scale']:>5} | " + " | ".join(
            f"{statistics.median(x['outside'][k] for x in r['runs']):.3f}" for k in r["runs"][0]["outside"]) + " |")
    print()
    print("Every run (wall s): " + "; ".join(f"scale {r['scale']}: " + ", ".join(fmt(x["wall"]) for x in r["runs"])
                                             for r in results))
    lat = [r for r in results if r.get("latency")]
    if lat:
        r = lat[-1]
        rounds = r["latency"]
        print()
        print(f"Writer commit latency at scale {r['scale']}, {args.rate:g} tps target, {args.window:g} s windows, "
              f"milliseconds")
        print()
        print("| round | case           | commits | p50  | p99  | max   | drills "
              "| window in drill / copying (s) | errors |")
        print("|------:|----------------|--------:|-----:|-----:|------:|-------:"
              "|------------------------------:|-------:|")
        for x in rounds:
            for case in ("without", "during"):
                o = sorted(x[case])
                extra = (f"{x['drills']:>6} | {x['window_in_drills']:.1f} / {x['window_copying']:.1f}"
                         if case == "during" else f"{'-':>6} | -")
                print(f"| {x['round']:>5} | {case + ' drill' if case == 'without' else 'during drills':<14} | "
                      f"{len(o):>7} | {p(o, 50) * 1e3:.2f} | {p(o, 99) * 1e3:.2f} | {o[-1] * 1e3:.2f} | {extra} | "
                      f"{x['errors_' + case]:>6} |")
        pooled = {case: sorted(v for x in rounds for v in x[case]) for case in ("without", "during")}
        for case in ("without", "during"):
            o = pooled[case]
            print(f"|   all | {case + ' drill' if case == 'without' else 'during drills':<14} | {len(o):>7} | "
                  f"{p(o, 50) * 1e3:.2f} | {p(o, 99) * 1e3:.2f} | {o[-1] * 1e3:.2f} |        |  |  |")
        ratios = [p(sorted(x["during"]), 99) / p(sorted(x["without"]), 99) for x in rounds]
        ratio = p(pooled["during"], 99) / p(pooled["without"], 99)
        print()
        print(f"p99 during / without: {ratio:.2f} pooled (rounds: {', '.join(f'{x:.2f}' for x in ratios)}); "
              f"target <= 2: {verdict(ratio <= TARGETS['p99_ratio'])}")
        print()
        print("During drills, by the step the commit was acknowledged in (all rounds), milliseconds")
        print()
        print("| where                                   | commits | p50  | p99   | max   |")
        print("|-----------------------------------------|--------:|-----:|------:|------:|")
        where: dict[str, list[float]] = {}
        for x in rounds:
            for k, v in x["by_step"].items():
                where.setdefault(k, []).extend(v)
        for k, v in sorted(where.items(), key=lambda kv: -len(kv[1])):
            o = sorted(v)
            print(f"| {k:<39} | {len(o):>7} | {p(o, 50) * 1e3:.2f} | {p(o, 99) * 1e3:.2f} | {o[-1] * 1e3:.2f} |")
    if results:
        print()
        print("Roles and replication after every drill (status -o json, postmaster and WAL receiver pids, drill "
              "port, scratch directory): unchanged; target: met")
    if demos:
        walls = [d["wall"] for d in demos]
        print()
        print(f"`dcctl lab demo`, {len(demos)} runs, seconds: " + ", ".join(fmt(w) for w in walls)
              + f"; median {fmt(statistics.median(walls))}, max {fmt(max(walls))}; target < 60: "
              f"{verdict(max(walls) < TARGETS['demo'])}")
        print()
        names = list(demos[0]["steps"])
        print("| demo step | " + " | ".join(f"run {i + 1}" for i in range(len(demos))) + " | median |")
        print("|-----------|" + "|".join("------:" for _ in demos) + "|-------:|")
        for name in names:
            values = [d["steps"].get(name, float("nan")) for d in demos]
            print(f"| {name} | " + " | ".join(fmt(v) for v in values) + f" | {fmt(statistics.median(values))} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="10,100", help="pgbench scales, comma-separated (default 10,100)")
    parser.add_argument("--runs", type=int, default=5, help="drills per scale (default 5)")
    parser.add_argument("--rate", type=float, default=200.0, help="writer transactions per second (default 200)")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per writer case (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="writer rounds (without, then during) (default 3)")
    parser.add_argument("--demo-runs", type=int, default=3, help="runs of `dcctl lab demo` (default 3)")
    parser.add_argument("--max-rate-mb", type=int, default=None,
                        help="drill.max_rate_mb for the labs (default: the config's default, 64)")
    parser.add_argument("--pacing", choices=["even", "server"], default=None,
                        help="drill.pacing for the labs (default: the config's default, even)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures to FILE")
    args = parser.parse_args()

    scales = [int(s) for s in args.scales.split(",") if s]
    started = datetime.now(timezone.utc)
    date_text = subprocess.run(["date"], capture_output=True, text=True).stdout.strip()
    results = [bench_scale(s, args, latency=not args.skip_latency and s == max(scales)) for s in scales]
    demos = [] if args.skip_demo else [one_demo(i) for i in range(1, args.demo_runs + 1)]
    print_results(results, demos, args, started, date_text)
    if args.json:
        Path(args.json).write_text(json.dumps({"date": started.isoformat(), "machine": machine(), "args": vars(args),
                                               "results": results, "demos": demos}, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
