"""One operation per service at a time: an exclusive lock recorded where dcctl runs and at
every reachable site, with an owner an operator can read (operation, host, pid, start time).

A lock whose owner is a dead process on this host is stale: it is reported, and broken only
with --break-lock after confirmation. A lock owned by another host is never guessed stale.
"""
from __future__ import annotations

import json
import os
import posixpath
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from dcctl.errors import DcctlError, RefusedError, UnreachableError
from dcctl.lab.procs import alive
from dcctl.transport.base import Transport


@dataclass(frozen=True)
class LockOwner:
    operation: str
    host: str
    pid: int
    started: float

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return f"operation {self.operation} (host {self.host}, pid {self.pid}, since {when})"

    def stale(self) -> bool:
        return self.host == socket.gethostname() and not alive(self.pid)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> "LockOwner":
        return cls(**json.loads(text))


def site_lock_path(site_state_dir: str, service: str) -> str:
    return posixpath.join(site_state_dir, f"{service}.lock")


class ServiceLock:
    def __init__(self, state_dir: str, service: str, site_transports: dict[str, tuple[Transport, str]]):
        """site_transports: site -> (transport, the site's state_dir)."""
        self.local_path = Path(state_dir) / "locks" / f"{service}.lock"
        self.service = service
        self.sites = site_transports
        self.held_at: list[str] = []
        self.unreachable: dict[str, str] = {}  # a lost site cannot hold a lock: failover must go on without it

    def holders(self) -> list[tuple[str, LockOwner]]:
        """Who holds the lock, where (local, or a site name)."""
        found = []
        if self.local_path.exists():
            found.append(("local", LockOwner.from_json(self.local_path.read_text())))
        for site, (transport, state_dir) in self.sites.items():
            try:
                text = transport.read_file(site_lock_path(state_dir, self.service)).decode()
                found.append((site, LockOwner.from_json(text)))
            except UnreachableError as exc:
                self.unreachable[site] = exc.message
            except DcctlError:
                continue
            except (ValueError, TypeError):
                found.append((site, LockOwner("unreadable lock file", "?", 0, 0)))
        return found

    def acquire(self, owner: LockOwner, *, break_stale: bool = False, skip_sites: tuple[str, ...] = ()) -> None:
        for where, holder in self.holders():
            if holder.operation == owner.operation:
                continue  # resuming our own operation
            if break_stale:
                continue
            if "-drill-" in owner.operation and "-drill-" in holder.operation and holder.stale():
                continue  # a dead drill changed no role; the new drill removes its copy first
            stale = " It looks STALE (that process is gone); break it with --break-lock." if holder.stale() else \
                " If that operation is dead, check it with `dcctl history`, then use --break-lock."
            raise RefusedError(f"service {self.service} is locked by {holder.describe()} at {where}.{stale}",
                               hint=f"`dcctl resume {holder.operation}` continues or rolls back that operation")
        self.local_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.local_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(owner.to_json())
        os.replace(tmp, self.local_path)
        for site, (transport, state_dir) in self.sites.items():
            if site in skip_sites or site in self.unreachable:
                continue
            transport.run(["mkdir", "-p", state_dir], timeout=30).check(f"creating {state_dir} at site {site}")
            transport.write_file(site_lock_path(state_dir, self.service), owner.to_json().encode(), mode=0o644)
            self.held_at.append(site)

    def release(self, owner: LockOwner) -> None:
        for site, (transport, state_dir) in self.sites.items():
            if site not in self.held_at:
                continue
            path = site_lock_path(state_dir, self.service)
            try:
                current = LockOwner.from_json(transport.read_file(path).decode())
            except (DcctlError, ValueError, TypeError):
                continue
            if current.operation == owner.operation:
                try:
                    transport.run(["rm", "-f", "--", path], timeout=30)
                except DcctlError:
                    pass  # an unreachable site keeps a lock naming a finished operation: history shows it
        if self.local_path.exists() and LockOwner.from_json(self.local_path.read_text()).operation == owner.operation:
            self.local_path.unlink()
