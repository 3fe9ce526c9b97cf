"""flock(1) around a command at a site: one holder at a time of a store's lock or a state
directory's guard, waiting a bounded time for it."""
from __future__ import annotations

from typing import Sequence

GUARD_BUSY_RC = 75  # flock -E: the lock stayed held for the whole wait


def under_flock(lock: str, wait: float, argv: Sequence[str]) -> list[str]:
    """argv, run holding flock(1) on `lock` (a file or a directory); exit code GUARD_BUSY_RC if the
    lock stayed held for `wait` seconds.

    >>> under_flock("/st/documents.lock", 600, ["rsync", "x"])
    ['flock', '-E', '75', '-w', '600', '/st/documents.lock', 'rsync', 'x']
    """
    return ["flock", "-E", str(GUARD_BUSY_RC), "-w", f"{max(1, round(wait))}", lock, *argv]
