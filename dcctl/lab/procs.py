"""Processes and ports of the lab: checked before they are signalled, never found by name."""
from __future__ import annotations

import random
import socket
import time
from pathlib import Path

from dcctl.procs import alive  # also used from here by the lab, its tests and the benchmarks


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def postmaster_pid(data_dir: Path) -> int | None:
    """The postmaster's PID from postmaster.pid, if that process is alive and is the
    postgres serving this very data directory (a stale file may name a recycled PID)."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 2 or not lines[0].strip().isdigit():
        return None
    pid = int(lines[0])
    argv = cmdline(pid)
    if not alive(pid) or not argv or not argv[0].endswith("postgres"):
        return None
    if Path(lines[1]).resolve() != data_dir.resolve():
        return None
    return pid


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(interval)


def free_port_block(count: int = 8) -> int:
    """A base port N with N..N+count-1 free on 127.0.0.1: a lab uses N..N+6 (servers, sshds,
    agents, the drill copy). For tests and benchmarks, which run several labs side by side."""
    for _ in range(200):
        base = random.randrange(20000, 32760 - count)  # below the ephemeral range
        if all(port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free block of ports on 127.0.0.1")
