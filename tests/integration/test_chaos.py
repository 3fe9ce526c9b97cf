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

# Seed 10's 6 operations: a failover after kill -9 of the primary's postmaster (dcctl killed as the
# fence starts, the rejoin killed after keep_diverged), a document burst, two switchovers killed at
# wait_replayed and at promote, a full drill with an agent and dcctl killed, and a failover of a
# frozen primary (killed at record_file_sync, the rejoin by a real SIGKILL).
SEED = 10
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
