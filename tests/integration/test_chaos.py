"""The chaos run in small (fault-injection issue, "Chaos run"): a few random operations with random
faults on a lab of its own, recovered as the docs say, must keep every promise: no acknowledged
commit lost but what a failover's report allows (and its rejoin counts), never two writable
primaries, no synced document lost, no hand repair. The 100-operation run's figures are in
docs/benchmarks.md; this one runs `bench.chaos` exactly as typed, with a fixed seed."""
import json
import os
import subprocess
import sys

import pytest

from tests.integration.conftest import free_port_block

pytestmark = pytest.mark.lab

# Seed 12's 6 operations: a full drill; a failover of a frozen primary (dcctl killed after promote,
# the rejoin killed at the end of its rewind); a site switchover killed as its final file sync
# starts, finished by `dcctl resume SITEOP`; a document burst; a failover after kill -9 of the
# primary's postmaster with an agent killed and dcctl interrupted in prepare and then killed; a
# failover interrupted (Ctrl-C) as promote starts.
SEED = 12
OPS = 6


def test_a_small_chaos_run_keeps_every_promise(open_tmp):
    figures = open_tmp / "chaos.json"
    # DCCTL_CHAOS_BASE_PORT: where a machine shared with other labs assigns this run its ports.
    base_port = int(os.environ.get("DCCTL_CHAOS_BASE_PORT") or free_port_block())
    result = subprocess.run([sys.executable, "-m", "bench.chaos", "--ops", str(OPS), "--seed", str(SEED),
                             "--json", str(figures), "--dir", str(open_tmp / "chaos"),
                             "--base-port", str(base_port)],
                            capture_output=True, text=True, timeout=600)
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(figures.read_text())
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-4000:]}"
    assert report["problems"] == [], report["problems"]
    assert len(report["records"]) == OPS
    assert report["lost_commits_switchover_drill"] == 0
    assert report["diverged_commits_counted_by_rejoins"] >= report["lost_commits_failover"]
    assert report["two_primaries"]["seconds"] == 0 and report["two_primaries"]["samples_caught"] == 0
    assert report["documents_lost"] == 0 and report["documents"]["synced"] > 0
    assert report["hand_repairs"] == 0
    assert report["acknowledged_commits"] > 0
    assert sum(report["faults_injected"].values()) > 0, "the seed injected no fault"
