"""The holding area at the receiving site: one directory per day (UTC) holding every file sync
replaced or deleted that day, at its path in the store, with the time of the run as suffix
(`scans/2026/a.pdf~103005.123456`). Days older than `holding_retention_days` are removed.

To bring a file back, copy it from there into the PRIMARY's store (the standby follows it).
"""
from __future__ import annotations

import posixpath
import re
from datetime import datetime, timedelta, timezone

from dcctl.filesync import layout
from dcctl.transport.base import Transport

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def expired_days(names: list[str], now: datetime, retention_days: float) -> list[str]:
    """Day directories whose whole day ended more than `retention_days` ago (others are ignored).

    >>> now = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
    >>> expired_days(["2026-11-24", "2026-11-22", "2026-10-01", "notes", "2026-11-23"], now, 1)
    ['2026-10-01', '2026-11-22']
    """
    cutoff = now - timedelta(days=retention_days)
    out = []
    for name in names:
        if not DAY.match(name):
            continue
        try:
            end = datetime.strptime(name, "%Y-%m-%d").replace(tzinfo=timezone.utc) + timedelta(days=1)
        except ValueError:
            continue
        if end < cutoff:
            out.append(name)
    return sorted(out)


def prune(transport: Transport, state_dir: str, service: str, store: str, retention_days: float,
          now: datetime | None = None) -> list[str]:
    """Remove the expired day directories at the receiving site; returns their names."""
    root = layout.holding_root(state_dir, service, store)
    listing = transport.run(["find", root, "-mindepth", "1", "-maxdepth", "1", "-type", "d", "-printf", "%f\\0"],
                            timeout=60)
    if listing.rc != 0:
        return []  # no holding area yet
    expired = expired_days([n for n in listing.stdout.split("\0") if n], now or datetime.now(timezone.utc),
                           retention_days)
    if expired:
        transport.run(["rm", "-rf", "--", *(posixpath.join(root, name) for name in expired)], timeout=3600).check(
            f"removing expired holding days at site {transport.site}")
    return expired


def size(transport: Transport, state_dir: str, service: str, store: str) -> tuple[int, int] | None:
    """(bytes, files) held at the site, None when there is no holding area."""
    root = layout.holding_root(state_dir, service, store)
    result = transport.run(["find", root, "-type", "f", "-printf", "%s\\n"], timeout=300)
    if result.rc != 0:
        return None
    sizes = [int(line) for line in result.stdout.split() if line.isdigit()]
    return sum(sizes), len(sizes)
