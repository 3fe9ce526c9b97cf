"""Where file-sync state lives at each site, all under the site's `state_dir` (pure).

    <state_dir>/filesync/<service>/status.json      the pushing agent's status (at the source site)
    <state_dir>/filesync/<service>/<store>.run.json       the last operator reconciliation (at the source)
    <state_dir>/filesync/<service>/<store>.received.json  "synced up to" receipt (at the receiving site)
    <state_dir>/filesync/<service>/<store>.lock     one rsync at a time per store (flock, at the source)
    <state_dir>/filesync/<service>/handed-over      "TIMELINE OPERATION": the agent here pushes no more
                                                    while its PostgreSQL is on that timeline (at the old primary)
    <state_dir>/ssh-<hash>.sock                     the SSH master connection to the other site (at the source)
    <state_dir>/filesync/<service>/<store>/holding/<YYYY-MM-DD>/<path>~<HHMMSS.ffffff>
                                                    what sync replaced or deleted (at the receiving site)
    <state_dir>/filesync/<service>/<store>/quarantine/<operation>/<path>
                                                    files a rejoin took out of the old primary's store

None of it is inside a store, so none of it is served or synced as part of one.
"""
from __future__ import annotations

import hashlib
import posixpath
from datetime import datetime, timezone

from dcctl.errors import ConfigError

MAX_SOCKET_PATH = 90  # sun_path holds 107 bytes; OpenSSH binds "<path>.XXXXXXXXXXXXXXXX" first


def service_dir(state_dir: str, service: str) -> str:
    return posixpath.join(state_dir, "filesync", service)


def status_path(state_dir: str, service: str) -> str:
    return posixpath.join(service_dir(state_dir, service), "status.json")


def run_path(state_dir: str, service: str, store: str) -> str:
    return posixpath.join(service_dir(state_dir, service), f"{store}.run.json")


def receipt_path(state_dir: str, service: str, store: str) -> str:
    return posixpath.join(service_dir(state_dir, service), f"{store}.received.json")


def lock_path(state_dir: str, service: str, store: str) -> str:
    return posixpath.join(service_dir(state_dir, service), f"{store}.lock")


def handover_path(state_dir: str, service: str) -> str:
    return posixpath.join(service_dir(state_dir, service), "handed-over")


def store_dir(state_dir: str, service: str, store: str) -> str:
    return posixpath.join(service_dir(state_dir, service), store)


def holding_root(state_dir: str, service: str, store: str) -> str:
    return posixpath.join(store_dir(state_dir, service, store), "holding")


def holding_dir(state_dir: str, service: str, store: str, when: datetime) -> str:
    """The dated holding directory of one day (UTC).

    >>> holding_dir("/var/lib/dcctl", "massar", "documents", datetime(2026, 11, 24, 10, 30, tzinfo=timezone.utc))
    '/var/lib/dcctl/filesync/massar/documents/holding/2026-11-24'
    """
    return posixpath.join(holding_root(state_dir, service, store), when.astimezone(timezone.utc).strftime("%Y-%m-%d"))


def holding_suffix(when: datetime) -> str:
    """Appended to each held file, so that two versions held the same day never collide.

    >>> holding_suffix(datetime(2026, 11, 24, 10, 30, 5, 123456, tzinfo=timezone.utc))
    '~103005.123456'
    """
    return when.astimezone(timezone.utc).strftime("~%H%M%S.%f")


def quarantine_dir(state_dir: str, service: str, store: str, tag: str) -> str:
    return posixpath.join(store_dir(state_dir, service, store), "quarantine", tag)


def control_path(state_dir: str, service: str, peer: str, tag: str) -> str:
    """The OpenSSH ControlPath of the connection to `peer` (tag: agent, cli-<pid>, op-<id>): a short
    hashed name at the top of state_dir, because ssh binds it with 17 more characters and a Unix
    socket path may have at most 107.

    >>> control_path("/var/lib/dcctl", "massar", "backup", "agent")
    '/var/lib/dcctl/ssh-f998d5b3521d.sock'
    """
    digest = hashlib.sha1(f"{service}\0{peer}\0{tag}".encode()).hexdigest()[:12]
    path = posixpath.join(state_dir, f"ssh-{digest}.sock")
    if len(path.encode()) > MAX_SOCKET_PATH:
        raise ConfigError([f"state_dir {state_dir}: the SSH control socket {path} would be longer than "
                           f"{MAX_SOCKET_PATH} bytes (OpenSSH adds 17 while it binds; a Unix socket path has "
                           f"at most 107)"], hint="use a shorter state_dir for the site")
    return path
