"""Measure `dcctl switchover` with WAN latency between the datacenters, and where the round trips go.

The kernel here has no netem, so the latency comes from dcctl.lab.relay: a lab (local transport,
one service) whose nodes sit behind delaying relays (dcctl.lab.relay.WanLab). What crosses
between the datacenters goes through them:

- replication: the standby's primary_conninfo, in both directions of roles (dcctl writes the
  old primary's from the config, whose postgres.host is the relay's socket directory; the lab's
  first standby is repointed the same way before the runs);
- the operator: dcctl is assumed to sit in the rabat datacenter, so its connections to backup's
  PostgreSQL are delayed and its connections to rabat's are not (the rabat relay lets the
  operator's uid through undelayed and delays only the backup site's PostgreSQL).

Not delayed: the application writer (the lab's multi-host DSN; it measures dcctl's window, not
the application's own WAN), and the commands dcctl runs at the sites (the local transport runs
them directly; over SSH each would cost round trips of its own), including the final file sync.

Three variants share one lab with the lab's Writer (200 tps) running through all of them; each
round runs one switchover per variant (the real CLI, `-o json`; reports and journals parsed with
bench.switchover's functions), so every variant meets the same machine load and, over two rounds,
both directions. Before each switchover the standby is repointed (ALTER SYSTEM primary_conninfo,
as dcctl would write it from that variant's config) and streams for --between seconds:

    direct       the lab's own config, no relays
    relays 0 ms  relays with no delay: what the relay hop itself costs
    relays N ms  relays with N/2 ms each way (--rtt-ms N)

Per switchover: the client write gap, the report's write window (writes stopped -> new primary
writable), the command's wall time, every step's seconds. Per step, the round trips: the extra
seconds over the 0 ms relays divided by the RTT, beside what the backup relay counted in that
step (the operator's round trips and new connections to backup; replication connections opened).

    .venv/bin/python -m bench.wan_switchover [--rtt-ms 20] [--runs 6] [--rate 200] [--between 3]
                                             [--base-port 28400] [--variants direct,relay0,relay]
                                             [--keep] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

from bench.common import machine, say, scratch_lab
from bench.switchover import acks_overlapping, cli_json, journal_entries, longest_gap, other, overheads
from dcctl.lab.lab import Lab
from dcctl.lab.layout import PRIMARY_SITE, SERVICE, STANDBY_SITE
from dcctl.lab.relay import WanLab, repoint_standby, streams_as_configured
from dcctl.lab.writer import Writer, missing_ids

VARIANTS = ("direct", "relay0", "relay")


def variant_label(name: str, rtt_ms: float) -> str:
    return {"direct": "direct", "relay0": "relays 0 ms", "relay": f"relays {rtt_ms:g} ms"}[name]


def variant_rtt(name: str, rtt_ms: float) -> float | None:
    """The relays' round trip in seconds; None: no relays."""
    return {"direct": None, "relay0": 0.0, "relay": rtt_ms / 1000.0}[name]


# ---- what the backup relay saw during each step ----------------------------------------------------

def step_windows(lab: Lab, op_id: str) -> list[tuple[str, float, float]]:
    """(step, start, end) in epoch seconds, from the operation's journal."""
    starts: dict[str, float] = {}
    windows = []
    for entry in journal_entries(lab, op_id):
        if entry["event"] == "step_start":
            starts[entry["step"]] = entry["ts"]
        elif entry["event"] in ("step_end", "step_fail") and entry["step"] in starts:
            windows.append((entry["step"], starts[entry["step"]], entry["ts"]))
    return windows


def crossings_per_step(wan: WanLab, lab: Lab, op_id: str, started_at: float, ended_at: float) -> dict[str, dict]:
    """Per step (and before the first / after the last), what crossed to backup through its relay:
    the operator's round trips (answered messages) and new connections (each one more round trip:
    TCP's handshake), and on replication connections (at either site's relay): connections opened,
    and exchanges (the primary's bytes after the standby's: while streaming, WAL after a status
    reply; while connecting, the answers it waits for)."""
    operator_uid = os.geteuid()
    remote = [e for e in wan.trace(STANDBY_SITE) if started_at <= e["t"] <= ended_at]
    replication = [e for site in (PRIMARY_SITE, STANDBY_SITE) for e in wan.trace(site)
                   if started_at <= e["t"] <= ended_at and e["uid"] != operator_uid]
    windows = step_windows(lab, op_id)
    bounds = [("(before: start-up, imports, roles, plan)", started_at, windows[0][1]), *windows,
              ("(after: unlock, report, exit)", windows[-1][2], ended_at)]
    counted = {}
    for name, start, end in bounds:
        mine = [e for e in remote if start <= e["t"] < end and e["uid"] == operator_uid]
        counted[name] = {"round_trips": sum(e["event"] == "round_trip" for e in mine),
                         "connections": sum(e["event"] == "open" for e in mine),
                         "replication_connections": sum(start <= e["t"] < end and e["event"] == "open"
                                                        for e in replication),
                         "replication_exchanges": sum(start <= e["t"] < end and e["event"] == "round_trip"
                                                      for e in replication)}
    return counted


# ---- the runs --------------------------------------------------------------------------------------

def one_switchover(lab: Lab, variant: str, config: str, writer: Writer, index: int, wan: WanLab | None) -> dict:
    errors_before = writer.stats.errors
    started_at, ended_at, wall, report = cli_json(config, "switchover", what=f"switchover {index} ({variant})")
    writer.wait_for_commits(20)
    acks = [t for _, t in list(writer.stats.acknowledged)]
    gap, _, _ = longest_gap(acks_overlapping(acks, started_at, ended_at))
    run = {"index": index, "variant": variant, "from": report["old_primary"], "to": report["new_primary"],
           "operation": report["operation"], "wall": wall, "client_gap": gap,
           "write_window": report["write_unavailability_seconds"],
           "writer_errors": writer.stats.errors - errors_before,
           "steps": {s["step"]: s["seconds"] for s in report["steps"]},
           "outside": overheads(lab, report, started_at, ended_at)}
    if wan is not None:
        run["crossings"] = crossings_per_step(wan, lab, report["operation"], started_at, ended_at)
    run["old_primary_streams_as_configured"] = streams_as_configured(lab, Path(config), report["old_primary"],
                                                                     SERVICE)
    return run


def bench(args, variants: list[str]) -> dict:
    """One lab; each round runs one switchover per variant, so that every variant meets the same
    machine load (which moves a lot on a shared machine) and, over two rounds, both directions."""
    out: dict = {"runs": []}
    with scratch_lab("wan-so-", args.keep) as directory, ExitStack() as stack:
        say(f"lab up in {directory} (base port {args.base_port})")
        lab = Lab.up(directory, base_port=args.base_port, transport="local")
        wans: dict[str, WanLab | None] = {}
        for variant in variants:
            rtt = variant_rtt(variant, args.rtt_ms)
            wans[variant] = None if rtt is None else stack.enter_context(
                WanLab(lab, rtt, directory.parent / f"wan-{variant}"))
        configs = {v: str(lab.spec.config_path if wan is None else wan.config_path) for v, wan in wans.items()}
        with Writer(lab.spec.app_dsn(), rate=args.rate, retry_delay=args.retry_delay) as writer:
            writer.wait_for_commits(50)
            primary, index = PRIMARY_SITE, 0
            for _round in range(args.runs):
                for variant in variants:
                    index += 1
                    repoint_standby(lab, Path(configs[variant]), SERVICE)
                    time.sleep(args.between)
                    run = one_switchover(lab, variant, configs[variant], writer, index, wans[variant])
                    if (run["from"], run["to"]) != (primary, other(primary)):
                        raise SystemExit(f"switchover {index} went {run['from']} -> {run['to']}")
                    primary = run["to"]
                    say(f"{index} [{variant_label(variant, args.rtt_ms)}] {run['from']} -> {run['to']}: client gap "
                        f"{run['client_gap']:.3f} s, write window {run['write_window']:.3f} s, wall "
                        f"{run['wall']:.3f} s, old primary streams as configured: "
                        f"{run['old_primary_streams_as_configured']}")
                    out["runs"].append(run)
            time.sleep(args.between)
        out["acknowledged"] = len(writer.stats.acknowledged)
        out["writer_errors"] = writer.stats.errors
        out["lost"] = missing_ids(lab.spec.app_dsn(), writer.stats.acknowledged)
        say(f"{out['acknowledged']} commits acknowledged, {len(out['lost'])} lost")
    return out


# ---- printing ----------------------------------------------------------------------------------------

def runs_of(result: dict, variant: str, direction: tuple[str, str] | None = None) -> list[dict]:
    return [run for run in result["runs"] if run["variant"] == variant
            and (direction is None or (run["from"], run["to"]) == direction)]


def med_max(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} / {max(values):.3f}" if values else "-"


def median_step(runs: list[dict], name: str) -> float | None:
    values = [run["steps"].get(name, run["outside"].get(name)) for run in runs]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def median_crossing(runs: list[dict], name: str, what: str) -> float | None:
    values = [run["crossings"][name][what] for run in runs if name in run.get("crossings", {})]
    return statistics.median(values) if values else None


def print_header(args, started: datetime, result: dict, variants: list[str]) -> None:
    info = machine()
    print(f"date:     {started:%Y-%m-%d %H:%M} UTC")
    print(f"machine:  {info['nproc']} CPU(s), {info['cpu']}, Linux {info['kernel']}, Python {info['python']}")
    print(f"load:     {args.load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1-min load average)")
    print(f"command:  .venv/bin/python -m bench.wan_switchover --rtt-ms {args.rtt_ms:g} --runs {args.runs} "
          f"--rate {args.rate:g} --between {args.between:g}")
    print(f"writer:   {args.rate:g} tps; {args.runs} rounds of one switchover per variant "
          f"({', '.join(variant_label(v, args.rtt_ms) for v in variants)}), alternating direction, {args.between:g} s "
          f"of writing before each; operator at site {PRIMARY_SITE}; {result['acknowledged']} commits acknowledged, "
          f"{len(result['lost'])} lost")
    print()
    print("| # | variant | direction | client gap | write window | wall | old primary streams as configured |")
    print("|--:|---|---|---:|---:|---:|---|")
    for run in result["runs"]:
        print(f"| {run['index']} | {variant_label(run['variant'], args.rtt_ms)} | {run['from']} -> {run['to']} | "
              f"{run['client_gap']:.3f} | {run['write_window']:.3f} | {run['wall']:.3f} | "
              f"{run['old_primary_streams_as_configured']} |")
    print()


def print_summary(result: dict, variants: list[str], rtt_ms: float) -> None:
    print("Median / max of the runs (seconds)")
    print()
    print("| measure | direction | " + " | ".join(variant_label(v, rtt_ms) for v in variants) + " |")
    print("|---|---|" + "---:|" * len(variants))
    directions = {"both": None, f"{PRIMARY_SITE} -> {STANDBY_SITE}": (PRIMARY_SITE, STANDBY_SITE),
                  f"{STANDBY_SITE} -> {PRIMARY_SITE}": (STANDBY_SITE, PRIMARY_SITE)}
    for key, label in (("client_gap", "client write gap"), ("write_window", "write window (report)"),
                       ("wall", "command wall time")):
        for name, direction in directions.items():
            print(f"| {label} | {name} | " + " | ".join(med_max([run[key] for run in runs_of(result, v, direction)])
                                                      for v in variants) + " |")
    print()


def print_round_trips(result: dict, variants: list[str], rtt_ms: float, direction: tuple[str, str]) -> None:
    runs = {v: runs_of(result, v, direction) for v in variants}
    delayed, base = runs.get("relay"), runs.get("relay0")
    rtt = rtt_ms / 1000.0
    print(f"{direction[0]} -> {direction[1]}: per step, medians (seconds) of {len(runs[variants[0]])} run(s) per "
          f"variant. Extra RTTs = (relays {rtt_ms:g} ms - relays 0 ms) / RTT. Counted at {rtt_ms:g} ms by the "
          f"relays: the operator's round trips (answered messages) and new connections to backup; replication "
          f"connections opened and exchanges (primary's bytes after the standby's), at either relay")
    print()
    print("| step | " + " | ".join(variant_label(v, rtt_ms) for v in variants)
          + " | extra RTTs | operator round trips | operator connections | replication connections "
          "| replication exchanges |")
    print("|---|" + "---:|" * (len(variants) + 5))
    sample = result["runs"][0]
    for name in list(sample["steps"]) + list(sample["outside"]):
        cells = [median_step(runs[v], name) for v in variants]
        if all(c is None or c < 0.0005 for c in cells) and "(" not in name:
            continue  # skipped steps (no poolers, no hooks) cost nothing anywhere
        slow, fast = (median_step(delayed, name), median_step(base, name)) if delayed and base else (None, None)
        extra = "-" if slow is None or fast is None else f"{(slow - fast) / rtt:.1f}"
        counted = [median_crossing(delayed, name, what) if delayed else None
                   for what in ("round_trips", "connections", "replication_connections", "replication_exchanges")]
        print(f"| {name} | " + " | ".join("-" if c is None else f"{c:.4f}" for c in cells) + f" | {extra} | "
              + " | ".join("-" if c is None else f"{c:g}" for c in counted) + " |")
    walls = {v: statistics.median(run["wall"] for run in runs[v]) for v in variants if runs[v]}
    extra = f"{(walls['relay'] - walls['relay0']) / rtt:.1f}" if delayed and base else "-"
    print("| = command wall time | " + " | ".join(f"{walls.get(v, float('nan')):.4f}" for v in variants)
          + f" | {extra} | | | | |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt-ms", type=float, default=20.0, help="round trip between the sites (default 20)")
    parser.add_argument("--runs", type=int, default=6,
                        help="rounds, each one switchover per variant (default 6: 3 per direction per variant)")
    parser.add_argument("--rate", type=float, default=200.0, help="writer transactions per second (default 200)")
    parser.add_argument("--retry-delay", type=float, default=0.03,
                        help="seconds the writer waits after an error before reconnecting (default 0.03)")
    parser.add_argument("--between", type=float, default=3.0, help="seconds of writing before each switchover")
    parser.add_argument("--base-port", type=int, default=28400, help="the labs' base port (one lab at a time)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, of {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--keep", action="store_true", help="leave the lab running (the relays stop)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures to FILE")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if unknown := [v for v in variants if v not in VARIANTS]:
        parser.error(f"unknown variant(s) {', '.join(unknown)}")
    if os.geteuid() != 0 and any(v != "direct" for v in variants):
        parser.error("the relays tell the operator from the lab's servers by uid: run as root")

    started = datetime.now(timezone.utc)
    args.load_start = os.getloadavg()[0]
    result = bench(args, variants)
    print_header(args, started, result, variants)
    print_summary(result, variants, args.rtt_ms)
    for direction in ((PRIMARY_SITE, STANDBY_SITE), (STANDBY_SITE, PRIMARY_SITE)):
        print_round_trips(result, variants, args.rtt_ms, direction)
    if args.json:
        Path(args.json).write_text(json.dumps({"date": started.isoformat(), "machine": machine(), "args": vars(args),
                                               "load_end": os.getloadavg()[0], "result": result}, indent=2) + "\n")
    if result["lost"]:
        raise SystemExit("acknowledged commits were lost")


if __name__ == "__main__":
    main()
