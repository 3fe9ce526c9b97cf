"""Measure `dcctl rejoin` of a diverged old primary at pgbench scale 10 and 100: it must not grow with size.

For each scale, a fresh lab; `pgbench -i -s N` into the app database on the primary (as postgres
over 127.0.0.1 with the lab's pgpass); the standby catches up, then a CHECKPOINT on the primary (so
the last checkpoint both nodes share is not one from the middle of the load; `--no-settle` skips it,
and then the first rejoin at scale 100 fails: see docs/benchmarks.md). Then `--runs` times,
alternating the sites:

1. kill -9 the primary's postmaster and fail over with the real CLI (`dcctl --yes failover`);
2. start the old primary by hand as a primary (standby.signal removed, `Lab.start`), commit
   `--diverge` pgbench transactions there (`pgbench -n -t N`, one commit each), stop it (fast);
3. commit the same number on the new primary;
4. time `python -m dcctl -c LAB/dcctl.yaml --yes -o json rejoin --site OLD`: wall time from process
   start to exit (it exits once the old primary streams again), and every step from its report;
   its `diverged_commits` must equal the transactions committed in 2.

Then one more, untimed, diagnostic round per scale: the same divergence, a CHECKPOINT on the new
primary, and `pg_rewind --dry-run --debug` run by hand, to show what pg_rewind would copy: bytes
per kind of file (WAL segments, relation blocks, whole files), next to the size of the new
primary's pg_wal and of the database; then a normal rejoin restores the lab. A failed rejoin is
recorded (and fails the target); the site is then rebuilt with `dcctl replication init --force`
and the runs go on (`--keep-failed` stops there instead and leaves the lab as it is). Results:
docs/benchmarks.md.

    .venv/bin/python -m bench.rejoin [--scales 10,100] [--runs 5] [--diverge 100] [--transport local|ssh]
                                   [--no-settle] [--no-explain] [--keep-failed] [--keep] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.common import machine, say, scratch_lab
from bench.report import print_run_header, print_step_medians
from bench.switchover import cli_json, other, overheads, run_cli
from dcctl.lab import procs
from dcctl.lab.lab import Lab
from dcctl.lab.layout import APP_DATABASE, PRIMARY_SITE, SUPERUSER
from dcctl.lab.procs import free_port_block
from dcctl.pg.tools import conninfo

TARGET = 1.5  # seconds, at every scale


def dsn(lab: Lab, site: str) -> str:
    return conninfo(host="127.0.0.1", port=lab.spec.pg_port(site), user=SUPERUSER, dbname=APP_DATABASE,
                    passfile=str(lab.spec.pgpass))


def pgbench(lab: Lab, site: str, *args: str) -> subprocess.CompletedProcess:
    argv = [f"{lab.spec.bin_dir}/pgbench", *args, dsn(lab, site)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"pgbench {' '.join(args)} at {site} exited {result.returncode}:\n{result.stderr}")
    return result


def query(lab: Lab, site: str, sql: str, *params):
    with lab.connect(site, APP_DATABASE) as conn:
        return conn.execute(sql, params).fetchone()


def caught_up(lab: Lab, primary: str, standby: str, timeout: float = 600) -> None:
    target = query(lab, primary, "SELECT pg_catalog.pg_current_wal_lsn()")[0]

    def replayed() -> bool:
        try:
            return bool(query(lab, standby, "SELECT pg_catalog.pg_last_wal_replay_lsn() >= %s::pg_lsn", target)[0])
        except Exception:
            return False

    if not procs.wait_until(replayed, timeout, interval=0.1):
        raise SystemExit(f"{standby} did not replay up to {target} within {timeout:g} s")


def kill_postmaster(lab: Lab, site: str) -> None:
    pid = lab.running(site)
    if not pid:
        raise SystemExit(f"no postmaster running at {site}")
    os.kill(pid, signal.SIGKILL)
    # Until it is reaped (here PID 1 takes up to about 2 s), PostgreSQL will not start on that data directory.
    if not procs.wait_until(lambda: not Path(f"/proc/{pid}").exists(), 30, interval=0.01):
        raise SystemExit(f"the killed postmaster {pid} of {site} was not reaped within 30 s")


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def diverge(lab: Lab, config: str, old: str, count: int, break_lock: bool = False) -> dict:
    """Fail over from `old`, then commit `count` transactions on it (started by hand) and on the new primary."""
    new = other(old)
    caught_up(lab, old, new)
    kill_postmaster(lab, old)
    _, _, failover_wall, report = cli_json(config, "failover", *(["--break-lock"] if break_lock else []),
                                           what=f"failover from {old}")
    (lab.spec.pgdata(old) / "standby.signal").unlink(missing_ok=True)
    lab.start(old)
    if query(lab, old, "SELECT pg_catalog.pg_is_in_recovery()")[0]:
        raise SystemExit(f"{old} came up in recovery, not as a primary")
    pgbench(lab, old, "-n", "-c", "1", "-t", str(count))
    lab.stop(old)
    pgbench(lab, new, "-n", "-c", "1", "-t", str(count))
    return {"failover_wall": failover_wall, "failover_operation": report["operation"]}


def one_rejoin(lab: Lab, config: str, old: str, count: int, index: int, break_lock: bool) -> dict:
    new = other(old)
    prep = diverge(lab, config, old, count, break_lock)
    source_wal = dir_bytes(lab.spec.pgdata(new) / "pg_wal")
    started_at, ended_at, wall, report = cli_json(config, "rejoin", "--site", old, what=f"rejoin {old} ({index})")
    observed = report["observed"]
    if observed.get("diverged_commits") != count:
        raise SystemExit(f"rejoin {index}: diverged_commits {observed.get('diverged_commits')} != {count} committed "
                         f"on {old} after the fork ({observed.get('divergence')})")
    if observed.get("rewind") != "pg_rewind":
        raise SystemExit(f"rejoin {index}: rewind was {observed.get('rewind')!r}, not pg_rewind")
    return {"index": index, "site": old, "primary": new, "wall": wall, "operation": report["operation"],
            "diverged_commits": observed["diverged_commits"],
            "diverged_wal_records": observed.get("diverged_wal_records"),
            "source_pg_wal_bytes": source_wal, "failover_wall": prep["failover_wall"],
            "steps": {s["step"]: s["seconds"] for s in report["steps"]},
            "outside": overheads(lab, report, started_at, ended_at)}


# pg_rewind --debug prints one line per file of the file map, "<path> (<ACTION>)", and one per chunk it
# fetches from the source, "received chunk for file "<path>", offset O, size S" (a dry run fetches too).
ACTION_LINE = re.compile(r"^pg_rewind: (\S+) \((COPY|COPY_TAIL|TRUNCATE|REMOVE|CREATE|NONE)\)$")
CHUNK_LINE = re.compile(r'^pg_rewind: received chunk for file "([^"]+)", offset (\d+), size (\d+)$')
NEED_LINE = re.compile(r"need to copy (\d+) MB \(total source directory size is (\d+) MB\)")


def file_kind(path: str) -> str:
    if path.startswith("pg_wal/"):
        return "WAL segments"
    if re.match(r"^(base|global|pg_tblspc)/(.*/)?\d+(\.\d+)?$", path):
        return "relation main forks"
    if re.match(r"^(base|global|pg_tblspc)/(.*/)?\d+_(fsm|vm|init)(\.\d+)?$", path):
        return "fsm/vm forks"
    return "other files"


def recover(lab: Lab, config: str, site: str) -> None:
    """After a failed rejoin: rebuild `site` as a standby with `dcctl replication init --force`."""
    say(f"    recovering: dcctl replication init --force --to {site}")
    _, _, _, result = run_cli(config, "--yes", "replication", "init", "--force", "--to", site, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"replication init --to {site} exited {result.returncode}:\n{result.stderr}")
    lab.wait_streaming(site)


def settle(lab: Lab, primary: str) -> None:
    """A CHECKPOINT on the primary once the standby has caught up, so that the last checkpoint the two
    share is not one from the middle of the bulk load (see `--no-settle`)."""
    caught_up(lab, primary, other(primary))
    with lab.connect(primary) as conn:
        conn.execute("CHECKPOINT")
    caught_up(lab, primary, other(primary))


def explain_rewind(lab: Lab, config: str, old: str, count: int, break_lock: bool = False) -> dict:
    """Untimed: what pg_rewind would copy for such a divergence (dry run), then a normal rejoin."""
    new = other(old)
    diverge(lab, config, old, count, break_lock)
    with lab.connect(new) as conn:
        conn.execute("CHECKPOINT")
    node_dir = lab.spec.pgdata(old)
    if (node_dir / "standby.signal").exists():
        (node_dir / "standby.signal").unlink()
    source = conninfo(host="127.0.0.1", port=lab.spec.pg_port(new), user=SUPERUSER, dbname="postgres",
                      passfile=str(lab.spec.pgpass))
    result = lab.local.run([f"{lab.spec.bin_dir}/pg_rewind", "--target-pgdata", str(node_dir), "--source-server",
                            source, "--dry-run", "--progress", "--debug"], timeout=600)
    text = result.stdout + result.stderr
    need = NEED_LINE.search(text)
    actions: dict[str, int] = {}
    fetched: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        match = ACTION_LINE.match(line)
        if match:
            actions[match.group(2)] = actions.get(match.group(2), 0) + 1
            continue
        match = CHUNK_LINE.match(line)
        if match:
            entry = fetched.setdefault(file_kind(match.group(1)), {"files": set(), "bytes": 0})
            entry["files"].add(match.group(1))
            entry["bytes"] += int(match.group(3))
    fetched = {k: {"files": len(v["files"]), "bytes": v["bytes"]} for k, v in fetched.items()}
    source_dir = lab.spec.pgdata(new)
    out = {"rc": result.rc, "need_copy_mb": int(need.group(1)) if need else None,
           "source_dir_mb": int(need.group(2)) if need else None, "file_actions": actions,
           "fetched": fetched, "source_pg_wal_bytes": dir_bytes(source_dir / "pg_wal"),
           "source_dir_bytes": dir_bytes(source_dir)}
    if result.rc != 0:
        out["stderr"] = result.stderr[-2000:]
    if os.environ.get("BENCH_REWIND_DEBUG"):
        Path(os.environ["BENCH_REWIND_DEBUG"]).write_text(text)
    cli_json(config, "rejoin", "--site", old, what=f"rejoin {old} (after the dry run)")
    return out


def bench_scale(scale: int, args) -> dict:
    out: dict = {"scale": scale, "transport": args.transport, "runs": []}

    def kept() -> bool:
        return args.keep or bool(args.keep_failed and out.get("failures"))

    with scratch_lab(f"dcctl-bench-rejoin-s{scale}-", kept, f"[scale {scale}] ") as directory:
        say(f"[scale {scale}] lab up in {directory} ({args.transport})")
        lab = Lab.up(directory, base_port=free_port_block(), transport=args.transport)
        config = str(lab.spec.config_path)
        out["postgres_version"] = subprocess.run([f"{lab.spec.bin_dir}/pg_ctl", "--version"], capture_output=True,
                                                 text=True, check=True).stdout.strip()
        started = time.monotonic()
        pgbench(lab, PRIMARY_SITE, "-i", "-q", "-s", str(scale))
        out["pgbench_init_seconds"] = time.monotonic() - started
        out["database_bytes"] = query(lab, PRIMARY_SITE, "SELECT pg_catalog.pg_database_size(%s)", APP_DATABASE)[0]
        caught_up(lab, PRIMARY_SITE, other(PRIMARY_SITE))
        if args.settle:
            settle(lab, PRIMARY_SITE)
        say(f"[scale {scale}] pgbench -i in {out['pgbench_init_seconds']:.1f} s; database "
            f"{out['database_bytes'] / 1e6:.0f} MB; standby caught up" + (", CHECKPOINT" if args.settle else ""))
        old, break_lock = PRIMARY_SITE, False
        for index in range(1, args.runs + 1):
            try:
                run = one_rejoin(lab, config, old, args.diverge, index, break_lock)
                break_lock = False
            except SystemExit as exc:
                say(f"[scale {scale}] {index}: rejoin {old} FAILED: {exc}")
                out["failures"] = out.get("failures", []) + [{"index": index, "site": old, "error": str(exc)}]
                if args.keep_failed:
                    raise
                recover(lab, config, old)
                old, break_lock = other(old), True
                continue
            say(f"[scale {scale}] {index}: rejoin {run['site']} onto {run['primary']}: {run['wall']:.3f} s "
                f"(pg_rewind {run['steps'].get('rewind', 0):.3f} s; source pg_wal "
                f"{run['source_pg_wal_bytes'] / 1e6:.0f} MB; {run['diverged_commits']} diverged commits counted)")
            out["runs"].append(run)
            old = other(old)
        if args.explain:
            out["explain"] = explain_rewind(lab, config, old, args.diverge, break_lock)
            e = out["explain"]
            say(f"[scale {scale}] pg_rewind --dry-run: need to copy {e['need_copy_mb']} MB of {e['source_dir_mb']} MB")
    return out


def print_results(results: list[dict], args, started: datetime) -> None:
    print_run_header(results, args, started, machine())
    print(f"rejoin:   {args.runs} per scale, {args.transport} transport, {args.diverge} pgbench transactions on the "
          f"old primary after the fork and {args.diverge} on the new one")
    print()
    for r in results:
        print(f"[scale {r['scale']}] database {r['database_bytes'] / 1e6:.0f} MB "
              f"(pgbench -i {r['pgbench_init_seconds']:.0f} s)")
        print()
        print("| # | rejoined | wall  | pg_rewind | diverged commits | new primary's pg_wal |")
        print("|--:|----------|------:|----------:|-----------------:|---------------------:|")
        for run in r["runs"]:
            print(f"| {run['index']} | {run['site']:<8} | {run['wall']:.3f} | {run['steps'].get('rewind', 0):9.3f} | "
                  f"{run['diverged_commits']:>16} | {run['source_pg_wal_bytes'] / 1e6:17.0f} MB |")
        print()
    print("| scale | database | rejoin wall median | max   | target <= 1.5 s |")
    print("|------:|---------:|-------------------:|------:|-----------------|")
    for r in results:
        walls = [run["wall"] for run in r["runs"]]
        ok = bool(walls) and statistics.median(walls) <= TARGET and not r.get("failures")
        failed = f" ({len(r['failures'])} failed)" if r.get("failures") else ""
        print(f"| {r['scale']:>5} | {r['database_bytes'] / 1e6:5.0f} MB | {statistics.median(walls):18.3f} | "
              f"{max(walls):.3f} | {'met' if ok else 'MISSED':<6}{failed:<9} |")
    for r in results:
        for failure in r.get("failures", []):
            lines = failure["error"].splitlines()
            why = next((line for line in reversed(lines) if line.startswith("dcctl: error:")), lines[0])
            print(f"\nscale {r['scale']}, run {failure['index']} (rejoin {failure['site']}) FAILED: {why[:400]}")
    print()
    print_step_medians(results, [f"s={r['scale']}" for r in results], "wall", "Per step, median of the runs (seconds); then what lies outside the steps")
    if all("explain" in r for r in results):
        print()
        print("What pg_rewind copies (untimed dry run after the same divergence and a CHECKPOINT on the new primary)")
        print()
        print("| scale | need to copy | source dir | new primary's pg_wal | fetched, by kind of file |")
        print("|------:|-------------:|-----------:|---------------------:|---------------------|")
        for r in results:
            e = r["explain"]
            kinds = "; ".join(f"{k}: {v['files']} files, {v['bytes'] / 1e6:.1f} MB"
                              for k, v in sorted(e["fetched"].items(), key=lambda item: -item[1]["bytes"]))
            print(f"| {r['scale']:>5} | {e['need_copy_mb']} MB | {e['source_dir_mb']} MB | "
                  f"{e['source_pg_wal_bytes'] / 1e6:.0f} MB | {kinds} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="10,100", help="pgbench scales, comma-separated (default 10,100)")
    parser.add_argument("--runs", type=int, default=5, help="rejoins per scale (default 5)")
    parser.add_argument("--diverge", type=int, default=100, help="transactions on each side after the fork")
    parser.add_argument("--transport", choices=["local", "ssh"], default="local")
    parser.add_argument("--no-explain", dest="explain", action="store_false",
                        help="skip the pg_rewind --dry-run round")
    parser.add_argument("--no-settle", dest="settle", action="store_false",
                        help="no CHECKPOINT after the bulk load: the first failover then comes with the last common "
                             "checkpoint in the middle of the load")
    parser.add_argument("--keep-failed", action="store_true", help="stop at the first failed rejoin, lab left as is")
    parser.add_argument("--keep", action="store_true", help="leave the labs running")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures to FILE")
    args = parser.parse_args()

    started = datetime.now(timezone.utc)
    args.load_start = os.getloadavg()[0]
    results = [bench_scale(int(s), args) for s in args.scales.split(",")]
    print_results(results, args, started)
    if args.json:
        Path(args.json).write_text(json.dumps({"date": started.isoformat(), "machine": machine(), "args": vars(args),
                                               "load_end": os.getloadavg()[0], "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
