"""Measure `dcctl replication init` throughput against a plain pg_basebackup of the same database.

Creates a lab, loads a pgbench database (scale 100 by default, about 1.5 GB) into the app
database on the primary, then alternates, `--repeats` times each:

- `dcctl --yes replication init --force` (the real CLI): stops the standby, moves its data aside
  (removed afterwards: it is the benchmark's own copy), pg_basebackup with a slot, configure,
  start, wait until it streams. The basebackup step is timed between its "[N/M] ... ..." and
  "[N/M] done in X s" lines on stderr, as they arrive; the whole command end to end.
- a plain `pg_basebackup -X stream --checkpoint=fast` as the lab's PostgreSQL user into a scratch
  directory next to the standby's (same filesystem), removed afterwards.

Each run starts from the same settled state (timed and reported, not counted): the standby has
replayed all the primary's WAL, the primary has checkpointed, and `sync` has flushed the page
cache's dirty pages (the previous copy's, and its deletion). One untimed warm-up round of each
comes first. Both run with a warm page cache (it is not dropped).
MB = 10^6 bytes; size = sum(pg_database_size) of the primary. Results: docs/benchmarks.md.

    .venv/bin/python -m bench.replication_init [--transport local|ssh] [--scale 100] [--repeats 3]
                                               [--keep] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.common import REPO, machine, say, scratch_lab
from bench.workload import load_pgbench
from dcctl.lab.lab import Lab
from dcctl.lab.layout import PRIMARY_SITE, REPLICATION_USER, STANDBY_SITE
from dcctl.lab.procs import free_port_block
from dcctl.pg.tools import conninfo

STEP_LINE = re.compile(r"^\[(\d+)/(\d+)\] (?:\[[^\]]*\] )?(.*?) \.\.\.$")
DONE_LINE = re.compile(r"^\[(\d+)/(\d+)\] done in ([\d.]+) s$")
# Short names for the steps of `replication init --force`, matched on their description, first match wins.
STEP_NAMES = [("create physical slot", "create_slot"), ("stop PostgreSQL", "stop_standby"), (" aside ", "move_aside"),
              ("remove ", "remove_partial"), ("pg_basebackup", "basebackup"), ("primary_conninfo", "configure"),
              ("move ", "move_into_place"), ("start PostgreSQL", "start_standby"), ("wait until", "wait_streaming")]


def database_size(lab: Lab) -> int:
    with lab.connect(PRIMARY_SITE) as conn:
        return int(conn.execute("SELECT sum(pg_database_size(oid))::bigint FROM pg_database").fetchone()[0])


def settle(lab: Lab) -> float:
    """Wait until the standby has replayed all of the primary's WAL, CHECKPOINT, sync. Returns seconds."""
    started = time.perf_counter()
    with lab.connect(PRIMARY_SITE) as primary, lab.connect(STANDBY_SITE) as standby:
        target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        while not standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]:
            if time.perf_counter() - started > 600:
                raise SystemExit("the standby did not catch up within 600 s")
            time.sleep(0.1)
        primary.execute("CHECKPOINT")
    os.sync()
    return time.perf_counter() - started


def dcctl_init(lab: Lab) -> dict:
    """Run the CLI, timestamping its stderr lines as they arrive; the steps come from the ConsoleReporter's
    "[i/N] [site] description ..." and "[i/N] done in X s" lines."""
    argv = [sys.executable, "-m", "dcctl", "-c", str(lab.spec.config_path), "--yes", "replication", "init", "--force"]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    names, began, steps, reported, stderr = {}, {}, {}, {}, []
    for line in proc.stderr:
        now, line = time.perf_counter(), line.strip()
        stderr.append(line)
        if match := STEP_LINE.match(line):
            index = match.group(1)
            names[index] = next(name for key, name in STEP_NAMES if key in match.group(3))
            began[index] = now
        elif match := DONE_LINE.match(line):
            index = match.group(1)
            steps[names[index]] = now - began[index]
            reported[names[index]] = float(match.group(3))
    stdout = proc.stdout.read()
    wall = time.perf_counter() - started
    if proc.wait() != 0 or "basebackup" not in steps:
        raise SystemExit(f"dcctl replication init exited {proc.returncode}:\n" + "\n".join(stderr) + stdout)
    asides = list(lab.spec.site_dir(STANDBY_SITE).glob("pgdata.dcctl-aside-*"))
    if len(asides) != 1:
        raise SystemExit(f"expected one aside directory, found {asides}")
    shutil.rmtree(asides[0])  # the benchmark's own previous copy
    return {"wall": wall, "basebackup": steps["basebackup"], "basebackup_reported": reported["basebackup"],
            "steps": steps}


def plain_basebackup(lab: Lab) -> dict:
    scratch = lab.spec.site_dir(STANDBY_SITE) / "plain-basebackup"  # next to pgdata: same filesystem
    source = conninfo(host="127.0.0.1", port=lab.spec.pg_port(PRIMARY_SITE), user=REPLICATION_USER,
                      passfile=str(lab.spec.pgpass))
    argv = [f"{lab.spec.bin_dir}/pg_basebackup", "-D", str(scratch), "-X", "stream", "--checkpoint=fast", "-d", source]
    started = time.perf_counter()
    lab.local.run(argv, timeout=3600).check("pg_basebackup")
    wall = time.perf_counter() - started
    shutil.rmtree(scratch)
    return {"wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["local", "ssh"], default="local")
    parser.add_argument("--scale", type=int, default=100, help="pgbench scale (default 100, about 1.5 GB)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each, alternating (default 3)")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures to FILE")
    args = parser.parse_args()

    started = datetime.now(timezone.utc)
    runs: dict[str, list[dict]] = {"dcctl": [], "plain": []}
    with scratch_lab("dcctl-bench-init-", args.keep) as directory:
        say(f"lab up ({args.transport}) in {directory}")
        lab = Lab.up(directory, base_port=free_port_block(), transport=args.transport)
        say(f"pgbench -i -s {args.scale}")
        load_seconds = load_pgbench(lab, args.scale)
        lab.wait_streaming(STANDBY_SITE)
        size = database_size(lab)
        with lab.connect(PRIMARY_SITE) as conn:
            version = conn.execute("SELECT version()").fetchone()[0]
        say(f"loaded {size / 1e6:.0f} MB in {load_seconds:.0f} s")
        for i in range(args.repeats + 1):  # round 0 is the untimed warm-up
            for name, run in (("dcctl", dcctl_init), ("plain", plain_basebackup)):
                figures = {"settle_before": settle(lab), **run(lab)}
                if i:
                    runs[name].append(figures)
                say(f"[{i}/{args.repeats}{' warm-up' if not i else ''}] {name}: " + ", ".join(
                    f"{k} {v:.2f} s" for k, v in figures.items() if isinstance(v, float)))

    med = statistics.median
    dcctl_bb = med(r["basebackup"] for r in runs["dcctl"])
    dcctl_wall = med(r["wall"] for r in runs["dcctl"])
    plain_wall = med(r["wall"] for r in runs["plain"])
    mbs = lambda seconds: size / 1e6 / seconds  # noqa: E731
    info = machine()
    print(f"date:      {started:%Y-%m-%d %H:%M} UTC")
    print(f"machine:   {info['nproc']} CPU(s), {info['cpu']}, Linux {info['kernel']}")
    print(f"python:    {info['python']}")
    print(f"postgres:  {version}")
    print(f"transport: {args.transport}; pgbench scale {args.scale}; database size {size / 1e6:.0f} MB "
          f"(loaded in {load_seconds:.0f} s); {args.repeats} timed run(s) each after a warm-up, alternating, "
          f"warm page cache")
    print()
    print("| what                                    | median s | MB/s  | runs (s)            |")
    print("|-----------------------------------------|---------:|------:|---------------------|")
    rows = [("dcctl replication init: basebackup step", [r["basebackup"] for r in runs["dcctl"]]),
            ("dcctl replication init: whole command", [r["wall"] for r in runs["dcctl"]]),
            ("plain pg_basebackup", [r["wall"] for r in runs["plain"]])]
    for what, times in rows:
        print(f"| {what:<39} | {med(times):>8.2f} | {mbs(med(times)):>5.0f} | "
              f"{', '.join(f'{t:.2f}' for t in times):<19} |")
    print()
    print(f"ratio dcctl/plain (MB/s): basebackup step {plain_wall / dcctl_bb:.2f}, "
          f"whole command {plain_wall / dcctl_wall:.2f}")
    print()
    before = med(r["wall"] - sum(r["steps"].values()) for r in runs["dcctl"])
    print(f"dcctl steps, median s: start-up, view and plan {before:.2f}, " + ", ".join(
        f"{name} {med(r['steps'][name] for r in runs['dcctl']):.2f}" for name in runs["dcctl"][0]["steps"]))
    print(f"settling before each run (not counted), median s: "
          f"dcctl {med(r['settle_before'] for r in runs['dcctl']):.2f}, "
          f"plain {med(r['settle_before'] for r in runs['plain']):.2f}")

    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": started.isoformat(), "machine": info, "postgres": version, "transport": args.transport,
            "scale": args.scale, "size_bytes": size, "load_seconds": load_seconds, "runs": runs,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
