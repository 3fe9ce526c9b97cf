"""The stop script (pg/tools.signal_stop) signals only the process that runs in the data directory
postmaster.pid belongs to, and gives up at its deadline measured by the clock. Real processes
stand in for a postmaster: the script only reads postmaster.pid and /proc."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dcctl.pg import tools

STAND_IN = """# postgres stand-in
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN if sys.argv[1] == "ignore" else
              lambda *_: (os.unlink("postmaster.pid"), sys.exit(0)))
open("ready", "w").close()
time.sleep(600)
"""


@pytest.fixture
def data_dir(tmp_path):
    directory = tmp_path / "pgdata"
    directory.mkdir()
    return directory


@pytest.fixture
def processes():
    started = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def stand_in(processes, data_dir: Path, on_sigint: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", STAND_IN, on_sigint], cwd=data_dir)
    processes.append(proc)
    deadline = time.monotonic() + 30
    while not (data_dir / "ready").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    (data_dir / "postmaster.pid").write_text(f"{proc.pid}\n{data_dir}\n")
    return proc


def run(data_dir: Path, mode: str, timeout: float, env=None, wait: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(tools.signal_stop(str(data_dir), mode, timeout), capture_output=True, text=True,
                          timeout=wait, env=env)


def test_a_process_of_another_directory_is_not_signalled(processes, data_dir, tmp_path):
    # A reused PID: the process postmaster.pid names has "postgres" in its command line but runs elsewhere.
    imposter = subprocess.Popen(["postgres: imposter", "600"], executable="/bin/sleep", cwd=tmp_path)
    processes.append(imposter)
    (data_dir / "postmaster.pid").write_text(f"{imposter.pid}\n{data_dir}\n")
    result = run(data_dir, "fast", 5)
    assert result.returncode == 3, result
    assert f"does not run in {data_dir}" in result.stderr
    time.sleep(0.2)
    assert imposter.poll() is None  # still alive: never signalled


def test_the_postmaster_of_the_directory_is_stopped(processes, data_dir):
    proc = stand_in(processes, data_dir, "exit")
    result = run(data_dir, "fast", 30)
    assert (result.returncode, result.stdout.strip()) == (0, "stopped"), result
    assert proc.wait(timeout=30) == 0


def test_no_postmaster_pid_or_a_dead_pid_is_not_running(processes, data_dir):
    assert run(data_dir, "fast", 5).stdout.strip() == "not running"
    gone = subprocess.Popen(["true"])
    gone.wait()
    (data_dir / "postmaster.pid").write_text(f"{gone.pid}\n{data_dir}\n")
    result = run(data_dir, "fast", 5)
    assert (result.returncode, result.stdout.strip()) == (0, "not running (stale postmaster.pid)"), result


def test_the_deadline_is_kept_by_the_clock_however_slow_each_poll_is(processes, data_dir, tmp_path):
    """Each poll of a loaded machine takes longer than its 10 ms sleep; a deadline counted in polls
    stretches with it. Here a poll takes 2 s: a 0.3 s deadline counted in polls (30 of them) would
    last a minute; kept by the clock, the script gives up after the first slow poll or two. The
    subprocess timeout below is that difference, not a performance figure."""
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "sleep").write_text("#!/bin/sh\nexec /bin/sleep 2\n")
    (shims / "sleep").chmod(0o755)
    proc = stand_in(processes, data_dir, "ignore")
    result = run(data_dir, "fast", 0.3, env=dict(os.environ, PATH=f"{shims}:{os.environ['PATH']}"), wait=20)
    assert result.returncode == 5, result
    assert "still running after the deadline" in result.stderr
    assert proc.poll() is None
