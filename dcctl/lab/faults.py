"""Faults the lab can inject, for tests and benchmarks: a tarpit port, and frozen (SIGSTOP)
process trees. The network faults of a netns lab are in netfaults.py."""
from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path


class Tarpit:
    """A TCP port on 127.0.0.1 that accepts connections and never sends a byte.

    It emulates a host that has stopped answering: the TCP connect succeeds, then an SSH
    client waits for the server's banner and libpq for the reply to its startup packet, each
    until its own timeout. Connections are held open until `close()`.

        with Tarpit() as tarpit:
            ... point a site's port at tarpit.port ...
    """

    def __init__(self, port: int = 0):
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self._listener.settimeout(0.1)  # lets the accept loop notice close()
        self.port: int = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name=f"tarpit-{self.port}")
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # the listener was closed
            with self._lock:
                if self._closed.is_set():
                    conn.close()
                    return
                self._held.append(conn)  # read nothing, write nothing

    @property
    def held(self) -> int:
        """How many connections are being held open."""
        with self._lock:
            return len(self._held)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self._listener.close()
        with self._lock:
            for conn in self._held:
                conn.close()
            self._held.clear()

    def __enter__(self) -> "Tarpit":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def process_tree(pid: int) -> list[int]:
    """pid and its descendants, from /proc (parents first)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def freeze_tree(pid: int) -> list[int]:
    """SIGSTOP pid and its descendants, as a hung host would hold them; returns the PIDs stopped."""
    frozen = []
    for member in process_tree(pid):
        try:
            os.kill(member, signal.SIGSTOP)
        except ProcessLookupError:
            continue  # a short-lived child that has just exited
        frozen.append(member)
    return frozen


def thaw(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
