"""One operation per service at a time: an exclusive lock recorded where dcctl runs and at
every reachable site, with an owner an operator can read (operation, host, pid, start time).

Taking it is atomic at every place: the lock file is created only if it does not exist (a hard
link locally, SFTP's exclusive rename over ssh), the local one first, then the sites in sorted
order, so of two operations started at the same instant exactly one gets them all; the other
gives back what it took and is refused, with the owner named.

A lock is taken over only by removing exactly the content that was judged (compare-and-remove
under flock), then creating it again: two processes taking over the same stale lock cannot
both win. What may be taken over:
- a lock whose operation's journal here says it finished (a kill between the journal's finish
  and the release): released, and said so;
- our own operation's lock left by its dead process (resume);
- a dead drill's lock, by a new drill;
- with --break-lock, any lock but one whose process is alive on this host.
A lock owned by another host is never guessed stale.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dcctl.errors import DcctlError, RefusedError, UnreachableError
from dcctl.ops.journal import Journal, JournalState
from dcctl.procs import alive
from dcctl.transport.base import Transport, in_made_dir
from dcctl.transport.local import LocalTransport

Say = Callable[[str], None]
_OPERATION_ID = re.compile(r"[A-Za-z0-9_.-]+")
_GUARD_TIMEOUT = 30  # seconds to wait for another process's compare-and-remove (it takes milliseconds)


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

    def running_here(self) -> bool:
        return self.host == socket.gethostname() and alive(self.pid)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> "LockOwner":
        return cls(**json.loads(text))


UNREADABLE = LockOwner("unreadable lock file", "?", 0, 0)


def parse_owner(text: str) -> LockOwner:
    try:
        return LockOwner.from_json(text)
    except (ValueError, TypeError):
        return UNREADABLE


def site_lock_path(site_state_dir: str, service: str) -> str:
    return posixpath.join(site_state_dir, f"{service}.lock")


# What to do with a lock file found in place of ours.
OURS, RELEASE, TAKE_OVER, REFUSE = "ours", "release", "take over", "refuse"


def judge(me: LockOwner, holder: LockOwner, *, finished: bool, break_lock: bool) -> str:
    """Pure decision: `finished` says whether the holder's journal here records its end."""
    if holder == me:
        return OURS
    if finished:
        return RELEASE  # the operation is over; only its release was lost
    if holder.running_here():
        return REFUSE  # a live dcctl: not even --break-lock or a resume takes its lock
    if holder.operation == me.operation and holder.stale():
        return TAKE_OVER  # resuming: the run that took it has died
    if break_lock:
        return TAKE_OVER
    if "-drill-" in me.operation and "-drill-" in holder.operation and holder.stale():
        return TAKE_OVER  # a dead drill changed no role; the new drill removes its copy first
    return REFUSE


class _LocalPlace:
    """The lock file in dcctl's own state_dir."""

    site = None

    def __init__(self, path: Path):
        self.path = path
        self.where = "local"

    def create(self, text: str) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return LocalTransport("local").create_exclusive(str(self.path), text.encode(), mode=0o644)

    def read(self) -> str | None:
        try:
            return self.path.read_bytes().decode(errors="surrogateescape")
        except FileNotFoundError:
            return None

    def remove_if(self, text: str) -> bool:
        return LocalTransport("local").remove_if_same(str(self.path), text.encode(errors="surrogateescape"),
                                                      str(self.path.parent), _GUARD_TIMEOUT)


class _SitePlace:
    """The lock file in a site's state_dir, reached through its transport."""

    def __init__(self, site: str, transport: Transport, state_dir: str, service: str):
        self.site = site
        self.where = site
        self.transport = transport
        self.state_dir = state_dir
        self.path = site_lock_path(state_dir, service)

    def create(self, text: str) -> bool:
        return in_made_dir(self.transport, self.state_dir,
                           lambda: self.transport.create_exclusive(self.path, text.encode(), mode=0o644))

    def read(self) -> str | None:
        try:
            return self.transport.read_file(self.path).decode(errors="surrogateescape")
        except UnreachableError:
            raise
        except DcctlError:
            return None  # gone since we looked (or unreadable: the next create says which)

    def remove_if(self, text: str) -> bool:
        return self.transport.remove_if_same(self.path, text.encode(errors="surrogateescape"), self.state_dir,
                                             _GUARD_TIMEOUT)


class ServiceLock:
    def __init__(self, state_dir: str, service: str, site_transports: dict[str, tuple[Transport, str]]):
        """site_transports: site -> (transport, the site's state_dir)."""
        self.state_dir = state_dir
        self.local_path = Path(state_dir) / "locks" / f"{service}.lock"
        self.service = service
        self.sites = site_transports
        self.held_at: list[str] = []
        self.unreachable: dict[str, str] = {}  # a lost site cannot hold a lock: failover must go on without it
        self._taken: list[_LocalPlace | _SitePlace] = []
        self._released_ops: set[str] = set()

    def _places(self, skip_sites: tuple[str, ...] = ()) -> list[_LocalPlace | _SitePlace]:
        """The fixed order every acquirer follows, so two of them meet at the first place."""
        sites = [_SitePlace(site, transport, state_dir, self.service)
                 for site, (transport, state_dir) in sorted(self.sites.items()) if site not in skip_sites]
        return [_LocalPlace(self.local_path), *sites]

    def acquire(self, owner: LockOwner, *, break_stale: bool = False, skip_sites: tuple[str, ...] = (),
                say: Say = lambda text: None) -> None:
        """Takes the lock at every reachable place, or none: refused with the owner named."""
        text = owner.to_json()
        self.held_at, self.unreachable, self._taken = [], {}, []
        try:
            for place in self._places(skip_sites):
                try:
                    self._take(place, owner, text, break_stale, say)
                except UnreachableError as exc:
                    if place.site is None:
                        raise
                    self.unreachable[place.site] = exc.message
                    continue
                self._taken.append(place)
                if place.site is not None:
                    self.held_at.append(place.site)
        except BaseException:
            self._give_back(text)
            raise

    def refusal_here(self, owner: LockOwner, *, break_stale: bool = False) -> RefusedError | None:
        """A look at the lock where dcctl runs only (no site asked), before anything is planned
        further: a crashed operation's lock is the first thing an operator must hear about."""
        found = _LocalPlace(self.local_path).read()
        if found is None:
            return None
        holder = parse_owner(found)
        if judge(owner, holder, finished=self._finished(holder.operation), break_lock=break_stale) == REFUSE:
            return self._refusal(holder, "local", break_stale)
        return None

    def _take(self, place, owner: LockOwner, text: str, break_stale: bool, say: Say) -> None:
        may_take_over = True  # once per place: a second takeover would take a lock just taken by a rival
        for _ in range(5):
            if place.create(text):
                return
            found = place.read()
            if found is None:
                continue  # released between our two looks
            holder = parse_owner(found)
            verdict = judge(owner, holder, finished=self._finished(holder.operation), break_lock=break_stale)
            if verdict == OURS:
                return
            if verdict == RELEASE:
                if place.remove_if(found):
                    self._say_released(holder.operation, say)
                continue
            if verdict == TAKE_OVER and may_take_over:
                may_take_over = False
                if place.remove_if(found) and holder.operation != owner.operation:
                    say(f"broke the lock of {holder.describe()} at {place.where}")
                continue
            raise self._refusal(holder, place.where, break_stale)
        raise RefusedError(f"service {self.service}: the lock at {place.where} kept changing while dcctl tried to "
                           f"take it; another operation is starting", hint="run `dcctl history`, then try again")

    def _refusal(self, holder: LockOwner, where: str, break_stale: bool) -> RefusedError:
        if holder.running_here():
            why = " That process is running on this host: wait for it (--break-lock never takes a live lock)."
        elif holder.stale():
            why = " It looks STALE (that process is gone); break it with --break-lock."
        else:
            why = " If that operation is dead, check it with `dcctl history`, then use --break-lock."
        return RefusedError(f"{self._held_by(holder, where)}.{why}", hint=self._resume_hint(holder))

    def _held_by(self, holder: LockOwner, where: str) -> str:
        return f"service {self.service} is locked by {holder.describe()} at {where}"

    def _resume_hint(self, holder: LockOwner) -> str:
        return f"`dcctl resume {holder.operation}` continues or rolls back that operation"

    def _finished(self, operation: str) -> bool:
        if not _OPERATION_ID.fullmatch(operation):
            return False
        try:
            return JournalState.read(Journal.open(self.state_dir, operation).entries()).finished
        except (ValueError, KeyError, OSError):
            return False

    def _say_released(self, operation: str, say: Say) -> None:
        if operation not in self._released_ops:
            self._released_ops.add(operation)
            say(f"released the lock left by finished operation {operation}")

    def _give_back(self, text: str) -> None:
        """Removes our lock wherever this process took it, the last taken first."""
        for place in reversed(self._taken):
            try:
                place.remove_if(text)
            except DcctlError:
                pass  # an unreachable site keeps a lock naming a finished operation: the next command releases it
        self._taken, self.held_at = [], []

    def release(self, owner: LockOwner) -> None:
        self._give_back(owner.to_json())

    def release_if_finished(self, operation: str, say: Say = lambda text: None) -> list[str]:
        """Removes, wherever it is found, a lock naming `operation` if its journal here says it
        finished (what `dcctl resume` does for a finished operation). Returns where."""
        if not self._finished(operation):
            return []
        released = []
        for place in self._places():
            try:
                found = place.read()
                if found is not None and parse_owner(found).operation == operation and place.remove_if(found):
                    released.append(place.where)
            except UnreachableError as exc:
                self.unreachable[place.where] = exc.message
        if released:
            self._say_released(operation, say)
        return released


def release_finished_lock(config, service_name: str, operation: str, say: Say) -> list[str]:
    """`dcctl resume` of a finished operation: release the lock it may have left behind."""
    from dcctl.transport import open_transport

    name, service = config.service(service_name)
    transports = {site: open_transport(site, cfg) for site, cfg in service.sites.items()}
    try:
        lock = ServiceLock(config.state_dir, name,
                           {site: (transports[site], cfg.state_dir) for site, cfg in service.sites.items()})
        return lock.release_if_finished(operation, say)
    finally:
        for transport in transports.values():
            transport.close()


def wait_at_test_barrier() -> None:
    """Test hook (DCCTL_TEST_LOCK_BARRIER=PATH): say we are ready (PATH.<pid>.ready), then wait
    for PATH to exist, so that a test starts two acquisitions at the same instant."""
    barrier = os.environ.get("DCCTL_TEST_LOCK_BARRIER")
    if not barrier:
        return
    Path(f"{barrier}.{os.getpid()}.ready").touch()
    deadline = time.monotonic() + 120
    while not os.path.exists(barrier) and time.monotonic() < deadline:
        pass  # spin, not sleep: both processes must leave the barrier within microseconds
