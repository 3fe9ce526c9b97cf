"""Measure file sync on real labs, each figure beside plain rsync in the same run.

1. initial: a first sync of a realistic tree (100,000 files of 1-64 KB, log-uniform, about
   1.5 GB, in about 1,000 nested folders) by `dcctl --yes filesync run` (no terminal: no progress
   bar; and with --progress), against `rsync -a` and `rsync -aHAX --numeric-ids` of the same tree,
   each from a cold page cache (sync; echo 3 > /proc/sys/vm/drop_caches, as root), all as the lab
   user into the (emptied) standby store; the cases alternate, --runs times each.
2. lag: a writer (the lab user) creates 50 files per second of 1-200 KB for 60 s on the primary
   while the agent runs; an inotify observer on the standby stamps each file when rsync renames
   it into place, then checks its SHA-256. Lag = arrival - the writer's close. Local and SSH.
3. rss: the agent watching a 1,000,000-file store (1,000 folders), its RSS sampled every second
   while a writer adds 50 files per second for 60 s.

    .venv/bin/python -m bench.filesync [--parts initial,lag,rss] [--runs 2] [--json FILE] [--keep]

Big trees are removed at the end (they sit in the labs, which are taken down).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml
from inotify_simple import INotify, flags

from bench import common
from bench.common import REPO, new_root, say
from dcctl.lab.agents import AgentProcess
from dcctl.lab.lab import Lab, lab_down
from dcctl.lab.procs import free_port_block

PYTHON = sys.executable
WRITER_PYTHON = "/usr/bin/python3"  # the writers run as the lab user, who may not reach the venv (e.g. under /root)


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def make_lab(root: Path, transport: str) -> Lab:
    return Lab.up(root / f"lab-{transport}", base_port=free_port_block(), transport=transport)


def bench_config(lab: Lab, **filesync) -> str:
    data = yaml.safe_load(lab.spec.config_path.read_text())
    data["services"]["massar"]["filesync"] = {"role_check_interval": 0.5, **filesync}
    path = lab.spec.root / "dcctl-bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def as_lab_user(lab: Lab) -> list[str]:
    return ["runuser", "-u", lab.spec.user, "--"] if os.geteuid() == 0 else []


def empty_dir(path: Path) -> None:
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


# ---- 1. initial sync ------------------------------------------------------------------------------

def make_tree(root: Path, files: int, folders_per_level: int, seed: int = 7) -> tuple[int, int]:
    """files spread over folders_per_level^3 leaf folders (plus the intermediate ones); sizes
    log-uniform in 1-64 KB. Returns (files, bytes)."""
    rng = random.Random(seed)
    blob = os.urandom(64 << 20)
    leaves = [f"{a:02d}/{b:02d}/{c:02d}" for a in range(folders_per_level) for b in range(folders_per_level)
              for c in range(folders_per_level)]
    total = 0
    for leaf in leaves:
        (root / leaf).mkdir(parents=True, exist_ok=True)
    for index in range(files):
        size = int(math.exp(rng.uniform(math.log(1024), math.log(64 * 1024))))
        offset = rng.randrange(0, len(blob) - size)
        with open(root / leaves[index % len(leaves)] / f"doc-{index:06d}.pdf", "wb") as fh:
            fh.write(blob[offset:offset + size])
        total += size
    return files, total


def initial(root: Path, runs: int, files: int) -> dict:
    lab = make_lab(root, "local")
    try:
        config = bench_config(lab)
        source, target = lab.spec.store_dir("rabat", "documents"), lab.spec.store_dir("backup", "documents")
        say(f"initial: writing {files} files ...")
        count, size = make_tree(source, files, 10)
        subprocess.run(["chown", "-R", f"{lab.spec.user}:", str(source)], check=True)
        folders = sum(1 for _ in source.rglob("*") if _.is_dir())
        dcctl = [PYTHON, "-m", "dcctl", "-c", config, "--yes", "filesync", "run"]
        cases = {"rsync -a": as_lab_user(lab) + ["rsync", "-a", f"{source}/", f"{target}/"],
                 "rsync -aHAX --numeric-ids": as_lab_user(lab) + ["rsync", "-aHAX", "--numeric-ids", f"{source}/",
                                                                   f"{target}/"],
                 "dcctl filesync run": dcctl,
                 "dcctl filesync run --progress": dcctl + ["--progress"]}
        times: dict[str, list[float]] = {name: [] for name in cases}
        for run in range(runs):
            for name, argv in cases.items():
                empty_dir(target)
                drop_caches()
                started = time.perf_counter()
                result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
                seconds = time.perf_counter() - started
                if result.returncode != 0:
                    raise SystemExit(f"{name} exited {result.returncode}: {result.stderr[-2000:]}")
                copied = sum(1 for p in target.rglob("*") if p.is_file())
                if copied != count:
                    raise SystemExit(f"{name}: {copied} files at the target, expected {count}")
                times[name].append(round(seconds, 2))
                say(f"  run {run + 1}: {name}: {seconds:.2f} s")
        base = statistics.median(times["rsync -a"])
        ratios = {name: round(statistics.median(values) / base, 3) for name, values in times.items()}
        return {"files": count, "bytes": size, "folders": folders, "seconds": times,
                "median_seconds": {name: statistics.median(values) for name, values in times.items()},
                "ratio_to_rsync_a": ratios}
    finally:
        lab_down(lab.spec.dir)


# ---- 2. continuous lag ----------------------------------------------------------------------------

WRITER = r"""
import json, os, random, sys, time
root, rate, seconds, seed = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
blob = os.urandom(4 << 20)
closed = {}
start = time.monotonic()
n = int(rate * seconds)
for i in range(n):
    due = start + i / rate
    delay = due - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    name = f"d{i % 10}/f{i:06d}.bin"
    size = rng.randint(1024, 200 * 1024)
    offset = rng.randrange(0, len(blob) - size)
    with open(os.path.join(root, name), "wb") as fh:
        fh.write(blob[offset:offset + size])
    closed[name] = time.time()
json.dump(closed, sys.stdout)
"""


class Observer:
    """Stamps each file the moment it appears complete at the receiver (rsync renames its temp file)."""

    def __init__(self, root: Path, dirs: list[str]):
        self.root = root
        self.inotify = INotify()
        self.wds = {self.inotify.add_watch(root / d, flags.MOVED_TO | flags.CLOSE_WRITE): d for d in dirs}
        self.arrived: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        while not self.stop.is_set():
            for event in self.inotify.read(timeout=100):
                if not event.name.startswith("."):
                    self.arrived.setdefault(f"{self.wds[event.wd]}/{event.name}", time.time())

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.inotify.close()


def lag(root: Path, transport: str, rate: float, seconds: float) -> dict:
    lab = make_lab(root, transport)
    agent = None
    try:
        config = bench_config(lab)
        source, target = lab.spec.store_dir("rabat", "documents"), lab.spec.store_dir("backup", "documents")
        dirs = [f"d{i}" for i in range(10)]
        for d in dirs:
            (source / d).mkdir()
        subprocess.run(["chown", "-R", f"{lab.spec.user}:", str(source)], check=True)
        agent = AgentProcess(config, "rabat", lab.spec.root / "agent.log").start()
        deadline = time.monotonic() + 60
        while not all((target / d).is_dir() for d in dirs):
            if time.monotonic() > deadline:
                raise SystemExit(f"the agent did not create the folders: {agent.log_tail()}")
            time.sleep(0.1)
        observer = Observer(target, dirs)
        say(f"lag ({transport}): writing {rate:g} files/s for {seconds:g} s ...")
        writer = subprocess.run(as_lab_user(lab) + [WRITER_PYTHON, "-c", WRITER, str(source), str(rate), str(seconds), "1"],
                                capture_output=True, text=True, check=True)
        closed = json.loads(writer.stdout)
        end = time.monotonic() + 30
        while len(observer.arrived) < len(closed) and time.monotonic() < end:
            time.sleep(0.1)
        observer.close()
        wrong = [name for name in closed if name in observer.arrived and
                 hashlib.sha256((source / name).read_bytes()).digest() !=
                 hashlib.sha256((target / name).read_bytes()).digest()]
        lags = [observer.arrived[name] - closed[name] for name in closed if name in observer.arrived]
        rss = _rss_mb(agent.pid)
        return {"transport": transport, "files": len(closed), "undelivered": len(closed) - len(lags),
                "wrong_content": len(wrong), "p50": round(percentile(lags, 0.5), 3),
                "p99": round(percentile(lags, 0.99), 3), "max": round(max(lags), 3), "agent_rss_mb": rss}
    finally:
        if agent is not None:
            agent.stop()
        lab_down(lab.spec.dir)


# ---- 3. agent memory on a 1,000,000-file store ---------------------------------------------------

def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def rss(root: Path, files: int, rate: float, seconds: float) -> dict:
    lab = make_lab(root, "local")
    agent = None
    try:
        config = bench_config(lab)
        source, target = lab.spec.store_dir("rabat", "documents"), lab.spec.store_dir("backup", "documents")
        say(f"rss: creating {files} files in 1,000 folders ...")
        per = files // 1000
        for folder in range(1000):
            directory = source / f"{folder // 100:02d}" / f"{folder % 100:02d}"
            directory.mkdir(parents=True)
            for index in range(per):
                with open(directory / f"{index:04d}", "wb") as fh:
                    fh.write(b"x")
        (source / "incoming").mkdir()
        subprocess.run(["chown", "-R", f"{lab.spec.user}:", str(source)], check=True)
        say("rss: first copy to the standby (rsync -a) ...")
        subprocess.run(as_lab_user(lab) + ["rsync", "-a", f"{source}/", f"{target}/"], check=True)
        agent = AgentProcess(config, "rabat", lab.spec.root / "agent.log").start()
        status = lab.spec.site_dir("rabat") / "dcctl-state" / "filesync" / "massar" / "status.json"
        started = time.monotonic()
        samples: list[tuple[float, float]] = []

        def reconciled() -> bool:
            try:
                return json.loads(status.read_text())["stores"]["documents"]["last_reconcile_finished_at"] is not None
            except (OSError, ValueError, KeyError):
                return False

        while not reconciled():
            samples.append((time.monotonic() - started, _rss_mb(agent.pid)))
            if time.monotonic() - started > 1800:
                raise SystemExit(f"no reconciliation in 30 min: {agent.log_tail()}")
            time.sleep(1)
        after_start = _rss_mb(agent.pid)
        watched = json.loads(status.read_text())["stores"]["documents"]["watched_dirs"]
        say(f"rss: watching {watched} folders, RSS {after_start} MB; writer {rate:g} files/s for {seconds:g} s ...")
        writer = subprocess.Popen(as_lab_user(lab) + [WRITER_PYTHON, "-c", WRITER.replace('f"d{i % 10}/', 'f"incoming/'),
                                                      str(source), str(rate), str(seconds), "2"],
                                  stdout=subprocess.DEVNULL)
        during = []
        while writer.poll() is None:
            during.append(_rss_mb(agent.pid))
            time.sleep(1)
        time.sleep(3)
        during.append(_rss_mb(agent.pid))
        arrived = sum(1 for _ in (target / "incoming").iterdir())
        return {"files": files + int(rate * seconds), "folders_watched": watched,
                "reconcile_rss_max_mb": max(v for _, v in samples) if samples else after_start,
                "rss_after_start_mb": after_start, "rss_while_writing_min_mb": min(during),
                "rss_while_writing_max_mb": max(during), "rss_end_mb": during[-1],
                "new_files_arrived": arrived, "new_files_written": int(rate * seconds)}
    finally:
        if agent is not None:
            agent.stop()
        lab_down(lab.spec.dir)


def machine() -> dict:
    rsync = subprocess.run(["rsync", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return {**common.machine(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(), "rsync": rsync, "load_average_at_start": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="initial,lag,rss")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--rss-files", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the page cache is dropped between runs, and the labs run as postgres")
    root = new_root("dcctl-bench-fs-")
    results: dict = {"machine": machine()}
    try:
        parts = args.parts.split(",")
        if "initial" in parts:
            results["initial"] = initial(root, args.runs, args.files)
            say(json.dumps(results["initial"]))
        if "lag" in parts:
            results["lag"] = [lag(root, transport, args.rate, args.seconds) for transport in ("local", "ssh")]
            say(json.dumps(results["lag"]))
        if "rss" in parts:
            results["rss"] = rss(root, args.rss_files, args.rate, args.seconds)
            say(json.dumps(results["rss"]))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
