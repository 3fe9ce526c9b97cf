"""Printing shared by the operation benchmarks (switchover, failover, rejoin)."""
from __future__ import annotations

import os
import statistics
from datetime import datetime


def print_run_header(results: list[dict], args, started: datetime, info: dict) -> None:
    print(f"date:     {started:%Y-%m-%d %H:%M} UTC")
    print(f"machine:  {info['nproc']} CPU(s), {info['cpu']}, Linux {info['kernel']}, Python {info['python']}")
    print(f"postgres: {results[0].get('postgres_version', '?')}")
    print(f"load:     {args.load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1-min load average; "
          f"{info['nproc']} CPUs, shared with other work)")


def print_step_medians(results: list[dict], columns: list[str], wall_key: str, title: str) -> None:
    """One row per step (then what lies outside the steps), one column per result, medians of its runs."""
    print(title)
    print()
    print("| step                                     | " + " | ".join(f"{c:>6}" for c in columns) + " |")
    print("|------------------------------------------|" + "|".join("-------:" for _ in columns) + "|")
    names = list(results[0]["runs"][0]["steps"]) + list(results[0]["runs"][0]["outside"])
    for name in names:
        cells = []
        for r in results:
            values = [run["steps"].get(name, run["outside"].get(name)) for run in r["runs"]]
            values = [v for v in values if v is not None]
            cells.append(f"{statistics.median(values):.4f}" if values else "-")
        print(f"| {name:<40} | " + " | ".join(f"{c:>6}" for c in cells) + " |")
    print(f"| {'= command wall time':<40} | " + " | ".join(
        f"{statistics.median([run[wall_key] for run in r['runs']]):.4f}" for r in results) + " |")
