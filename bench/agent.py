"""Measure the dcctl agent on a real lab: scrape latency (healthy, peer unreachable, TLS + basic
auth) and the agent's memory and CPU over a long run.

Each agent is the real `python -m dcctl agent run` process. A scrape is one full HTTP GET of
/metrics on a new connection (as Prometheus does against this HTTP/1.0 server), timed from
connect to the last byte, and checked. Results are recorded in docs/benchmarks.md.

    .venv/bin/python -m bench.agent [--scrapes 500] [--duration 600] [--interval 5]
                                   [--pace 0.02] [--transport local|ssh|both] [--json FILE] [--keep]
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import ssl
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from bench.common import REPO, machine, scratch_lab
from dcctl.lab.agents import AgentProcess
from dcctl.lab.faults import Tarpit
from dcctl.lab.lab import Lab
from dcctl.lab.layout import PRIMARY_SITE, STANDBY_SITE
from dcctl.lab.procs import free_port_block

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")




def free_port() -> int:
    return free_port_block(1)


# ---- scraping -------------------------------------------------------------------------------

class Scraper:
    def __init__(self, port: int, *, context: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None):
        self.port = port
        self.context = context
        self.headers = {}
        if auth:
            self.headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()

    def get(self, path: str = "/metrics") -> tuple[int, str]:
        if self.context:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=self.context)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers=self.headers)
            reply = conn.getresponse()
            return reply.status, reply.read().decode()
        finally:
            conn.close()

    def timed(self, count: int, check, pace: float) -> list[float]:
        """`count` checked scrapes, `pace` seconds apart, so that many of them land while a collection runs."""
        times = []
        for _ in range(count):
            time.sleep(pace)
            started = time.perf_counter()
            status, body = self.get()
            times.append(time.perf_counter() - started)
            if status != 200:
                raise SystemExit(f"scrape answered {status}: {body[:200]}")
            check(body)
        return times


def wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")


def has(*fragments: str):
    def check(body: str) -> None:
        missing = [f for f in fragments if f not in body]
        if missing:
            raise SystemExit(f"scrape lacks {missing}")
    return check


# ---- the agent process ----------------------------------------------------------------------

def write_config(lab: Lab, name: str, interval: float, change=lambda data: None) -> str:
    data = yaml.safe_load(lab.spec.config_path.read_text())
    for site in data["services"]["massar"]["sites"].values():
        site["agent"]["interval"] = interval
    change(data)
    path = lab.spec.root / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def proc_usage(pid: int) -> dict:
    """CPU seconds (user + system), resident memory, threads and open files of a live process."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(stat[11]), int(stat[12])  # fields 14 and 15 of proc(5)
    rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    threads = int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if line.startswith("Threads:")))
    return {"cpu_seconds": (utime + stime) / CLOCK_TICKS, "rss_bytes": rss_pages * PAGE_SIZE, "threads": threads,
            "open_fds": len(os.listdir(f"/proc/{pid}/fd"))}


def runs_total(body: str) -> int:
    for line in body.splitlines():
        if line.startswith("dcctl_collector_runs_total{"):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def self_signed(directory: Path) -> tuple[str, str]:
    cert, key = directory / "agent.crt", directory / "agent.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


def bcrypt_hash(password: str) -> str:
    result = subprocess.run([sys.executable, "-m", "dcctl", "agent", "hash-password"], input=password + "\n",
                            capture_output=True, text=True, check=True, cwd=REPO, timeout=60)
    return result.stdout.strip()


# ---- the cases ------------------------------------------------------------------------------

def scrape_cases(lab: Lab, work: Path, scrapes: int, interval: float, pace: float) -> dict:
    cases = {}
    label = f"[{lab.spec.transport}]"

    print(f"{label} healthy: {scrapes} scrapes of the standby's agent", file=sys.stderr)
    config = write_config(lab, "bench-agents.yaml", interval)
    agent = AgentProcess(config, STANDBY_SITE, work / "agent-healthy.log").start()
    try:
        scraper = Scraper(agent.port)
        wait_for(lambda: scraper.get("/healthz")[0] == 200, 60, "the first collection")
        cases["healthy"] = scraper.timed(scrapes, has('dcctl_pg_up{service="massar",site="backup"} 1.0',
                                                      'dcctl_replication_streaming{service="massar",site="backup"} 1.0'),
                                         pace)
        size = len(scraper.get()[1])
    finally:
        agent.stop()

    with Tarpit() as tarpit:
        print(f"{label} peer unreachable (tarpit :{tarpit.port}): {scrapes} scrapes of the primary's agent",
              file=sys.stderr)

        def peer_in_tarpit(data):
            backup = data["services"]["massar"]["sites"][STANDBY_SITE]
            backup["postgres"]["port"] = tarpit.port
            if backup["transport"]["type"] == "ssh":
                backup["transport"]["port"] = tarpit.port

        config = write_config(lab, "bench-agent-tarpit.yaml", interval, peer_in_tarpit)
        agent = AgentProcess(config, PRIMARY_SITE, work / "agent-tarpit.log").start()
        try:
            scraper = Scraper(agent.port)
            down = 'dcctl_peer_up{service="massar",site="backup",target="postgres"} 0.0'
            wait_for(lambda: down in scraper.get()[1], 60, "the first collection with the peer in the tarpit")
            before = runs_total(scraper.get()[1])
            cases["peer unreachable"] = scraper.timed(
                scrapes, has(down, 'dcctl_pg_up{service="massar",site="rabat"} 1.0'), pace)
            collections = runs_total(scraper.get()[1]) - before
            if tarpit.held < 1:
                raise SystemExit("the tarpit held no connection: the fault was not exercised")
        finally:
            agent.stop()

    print(f"{label} TLS + basic auth: {scrapes} scrapes", file=sys.stderr)
    cert, key = self_signed(work)
    port = free_port()

    def secured(data):
        data["services"]["massar"]["sites"][STANDBY_SITE]["agent"].update(
            listen=f"127.0.0.1:{port}", tls_cert_file=cert, tls_key_file=key, basic_auth_username="prometheus",
            basic_auth_password_hash=bcrypt_hash("bench-password"))

    config = write_config(lab, "bench-agent-tls.yaml", interval, secured)
    agent = AgentProcess(config, STANDBY_SITE, work / "agent-tls.log").start()
    try:
        scraper = Scraper(port, context=ssl.create_default_context(cafile=cert), auth=("prometheus", "bench-password"))
        wait_for(lambda: scraper.get("/healthz")[0] == 200, 60, "the first collection (TLS)")
        cases["TLS + basic auth"] = scraper.timed(scrapes, has('dcctl_pg_up{service="massar",site="backup"} 1.0'),
                                                  pace)
    finally:
        agent.stop()
    return {"cases": cases, "metrics_bytes": size, "collections_during_tarpit_scrapes": collections}


def soak(lab: Lab, work: Path, duration: float, interval: float) -> dict:
    """Both agents at `interval` for `duration` seconds, scraped every 15 s as Prometheus would."""
    print(f"[{lab.spec.transport}] soak: both agents, interval {interval:g} s, {duration:g} s", file=sys.stderr)
    config = write_config(lab, "bench-soak.yaml", interval)
    agents = {site: AgentProcess(config, site, work / f"agent-soak-{site}.log").start()
              for site in (PRIMARY_SITE, STANDBY_SITE)}
    out = {}
    try:
        scrapers = {site: Scraper(agent.port) for site, agent in agents.items()}
        for scraper in scrapers.values():
            wait_for(lambda s=scraper: s.get("/healthz")[0] == 200, 60, "the first collection")
        start = {site: proc_usage(agent.pid) for site, agent in agents.items()}
        runs_start = {site: runs_total(s.get()[1]) for site, s in scrapers.items()}
        peak = {site: u["rss_bytes"] for site, u in start.items()}
        began = time.monotonic()
        samples = {site: [] for site in agents}
        while (elapsed := time.monotonic() - began) < duration:
            time.sleep(min(15.0, duration - elapsed))
            for site, agent in agents.items():
                if not agent.running():
                    raise SystemExit(f"the {site} agent died during the soak: {agent.log_tail()}")
                status, body = scrapers[site].get()
                if status != 200 or "dcctl_pg_up" not in body:
                    raise SystemExit(f"the {site} agent answered {status} during the soak")
                usage = proc_usage(agent.pid)
                peak[site] = max(peak[site], usage["rss_bytes"])
                samples[site].append({"t": round(time.monotonic() - began, 1), **usage})
        wall = time.monotonic() - began
        for site, agent in agents.items():
            end = proc_usage(agent.pid)
            runs = runs_total(scrapers[site].get()[1]) - runs_start[site]
            cpu = end["cpu_seconds"] - start[site]["cpu_seconds"]
            out[site] = {"seconds": wall, "collections": runs, "cpu_seconds": cpu, "cpu_percent": 100 * cpu / wall,
                         "cpu_ms_per_collection": 1000 * cpu / max(runs, 1),
                         "rss_start_bytes": start[site]["rss_bytes"], "rss_end_bytes": end["rss_bytes"],
                         "rss_peak_bytes": peak[site], "threads_end": end["threads"], "open_fds_end": end["open_fds"],
                         "samples": samples[site]}
    finally:
        for agent in agents.values():
            agent.stop()
    return out


def bench_transport(transport: str, args) -> dict:
    with scratch_lab(f"dcctl-bench-agent-{transport}-", args.keep, f"[{transport}] ") as directory:
        work = directory.parent / "work"
        work.mkdir()
        print(f"[{transport}] lab up in {directory}", file=sys.stderr)
        lab = Lab.up(directory, base_port=free_port_block(), transport=transport)
        out = {"transport": transport, **scrape_cases(lab, work, args.scrapes, args.interval, args.pace)}
        if args.duration > 0:
            out["soak"] = soak(lab, work, args.duration, args.interval)
        config = yaml.safe_load(lab.spec.config_path.read_text())
        out["site_timeout"] = config["site_timeout"]
        return out


def summary(times: list[float]) -> dict:
    ordered = sorted(times)

    def rank(p: float) -> float:  # nearest rank
        return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered) + 0.5) - 1))]

    return {"scrapes": len(times), "median_ms": 1000 * statistics.median(times), "p99_ms": 1000 * rank(0.99),
            "max_ms": 1000 * ordered[-1], "mean_ms": 1000 * statistics.fmean(times)}


def mib(value: float) -> str:
    return f"{value / 1048576:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=500, help="scrapes per latency case (default 500)")
    parser.add_argument("--duration", type=float, default=600, help="seconds of the memory/CPU soak (default 600; "
                                                                     "0 skips it)")
    parser.add_argument("--interval", type=float, default=5, help="agent.interval during the bench (default 5)")
    parser.add_argument("--pace", type=float, default=0.02, help="seconds between two scrapes (default 0.02: 500 "
                                                                 "scrapes span two collections)")
    parser.add_argument("--transport", choices=["local", "ssh", "both"], default="both")
    parser.add_argument("--keep", action="store_true", help="leave the labs running")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures to FILE")
    args = parser.parse_args()

    started = datetime.now(timezone.utc)
    transports = ["local", "ssh"] if args.transport == "both" else [args.transport]
    results = [bench_transport(t, args) for t in transports]

    info = machine()
    print(f"date:     {started:%Y-%m-%d %H:%M} UTC")
    print(f"machine:  {info['nproc']} CPU(s), {info['cpu']}, Linux {info['kernel']}, Python {info['python']}")
    print(f"agent:    interval {args.interval:g} s, site_timeout {results[0]['site_timeout']:g} s; "
          f"scrapes {args.pace * 1000:g} ms apart")
    print()
    print("| transport | case             | scrapes | median  | p99     | max     |")
    print("|-----------|------------------|--------:|--------:|--------:|--------:|")
    for r in results:
        for case, times in r["cases"].items():
            s = summary(times)
            print(f"| {r['transport']:<9} | {case:<16} | {s['scrapes']:>7} | {s['median_ms']:.2f} ms | "
                  f"{s['p99_ms']:.2f} ms | {s['max_ms']:.2f} ms |")
    print()
    for r in results:
        print(f"[{r['transport']}] /metrics is {r['metrics_bytes']} bytes; "
              f"{r['collections_during_tarpit_scrapes']} collection(s) ran during the peer-unreachable scrapes")
    if any("soak" in r for r in results):
        print()
        print("| transport | agent  | run     | collections | CPU      | CPU/collection | RSS start | RSS end   | RSS peak  |"
              " threads | fds |")
        print("|-----------|--------|--------:|------------:|---------:|---------------:|----------:|----------:|----------:|"
              "--------:|----:|")
        for r in results:
            for site, s in r.get("soak", {}).items():
                print(f"| {r['transport']:<9} | {site:<6} | {s['seconds']:.0f} s | {s['collections']:>11} | "
                      f"{s['cpu_seconds']:.1f} s ({s['cpu_percent']:.2f} %) | {s['cpu_ms_per_collection']:.1f} ms | "
                      f"{mib(s['rss_start_bytes'])} | {mib(s['rss_end_bytes'])} | {mib(s['rss_peak_bytes'])} | "
                      f"{s['threads_end']} | {s['open_fds_end']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": started.isoformat(), "machine": info, "args": vars(args), "results": results,
            "summary": [{"transport": r["transport"], "case": c, **summary(t)} for r in results
                        for c, t in r["cases"].items()],
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
