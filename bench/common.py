"""What the benchmark scripts share: the machine they ran on, progress lines on stderr, and a
scratch lab that is taken down afterwards (or left running with --keep)."""
from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dcctl.lab.lab import lab_down

REPO = Path(__file__).resolve().parent.parent


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": model, "python": platform.python_version(),
            "kernel": platform.release()}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def new_root(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)  # the postgres user must be able to enter it
    return root


@contextmanager
def scratch_lab(prefix: str, keep: bool | Callable[[], bool] = False, tag: str = "") -> Iterator[Path]:
    """The directory for a lab, <root>/lab under a new /tmp/<prefix>XXXX root (free for other
    scratch files). Afterwards the lab is taken down and the root removed, unless keep (asked
    then, when it is a function)."""
    root = new_root(prefix)
    directory = root / "lab"
    try:
        yield directory
    finally:
        if keep() if callable(keep) else keep:
            say(f"{tag}--keep: lab left in {directory}; remove with `dcctl lab down --dir {directory}`")
        else:
            lab_down(directory)
            shutil.rmtree(root, ignore_errors=True)
