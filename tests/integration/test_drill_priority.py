"""The drill's copy runs at the lowest CPU priority, its standby-side walsender too, and in the
kernel's session groups (autogroup) as well as by nice value (docs/benchmarks.md: the writer's p99)."""
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import config_variant, local_lab  # noqa: F401

pytestmark = pytest.mark.lab


def priorities(pid: int) -> tuple[int, int | None]:
    """(nice value, nice value of its autogroup or None where the kernel has none)."""
    nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    try:
        autogroup = Path(f"/proc/{pid}/autogroup").read_text()  # "/autogroup-123 nice 19"
    except FileNotFoundError:
        return nice, None
    return nice, int(autogroup.split()[-1])


def drill_processes(lab_) -> dict[str, tuple[int, int | None]]:
    """The copy's pg_basebackup and the walsender serving it (a child of the standby's postmaster)."""
    postmaster = (lab_.spec.pgdata("backup") / "postmaster.pid").read_text().split()[0]
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (entry / "status").read_text()
            if "pg_basebackup" in cmdline and str(lab_.spec.root) in cmdline and not cmdline.startswith("sh "):
                found["pg_basebackup"] = priorities(int(entry.name))
            elif cmdline.startswith("postgres: walsender") and "sending backup" in cmdline \
                    and f"PPid:\t{postmaster}\n" in status:
                found["walsender"] = priorities(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return found


def test_drill_copy_and_its_walsender_run_at_the_lowest_priority(local_lab):
    def slow_copy(data):
        data["services"]["massar"]["drill"]["max_rate_mb"] = 4  # a copy that lasts long enough to look at
    config = config_variant(local_lab, "slow-drill", slow_copy)
    seen: dict[str, tuple[int, int | None]] = {}
    done = threading.Event()

    def watch():
        while not done.is_set():
            for name, value in drill_processes(local_lab).items():
                if value[0] == 19:
                    seen[name] = value  # keep the last reading once lowered (the walsender is found after it starts)
                else:
                    seen.setdefault(name, value)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    result = subprocess.run([sys.executable, "-m", "dcctl", "-c", config, "--yes", "-o", "json", "drill"],
                            capture_output=True, text=True, env=dict(os.environ), timeout=300)
    done.set()
    watcher.join()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outcome"] == "success"
    assert set(seen) == {"pg_basebackup", "walsender"}, seen
    for name, (nice, autogroup) in seen.items():
        assert nice == 19, (name, seen)
        assert autogroup in (None, 19), (name, seen)
