"""Run independent blocking calls at once, with one deadline for all of them.

Daemon threads: a call stuck on a dead peer past the deadline is abandoned, never waited for,
so it cannot stall the command (or its exit).
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable


@dataclass(frozen=True)
class Outcome:
    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out


def run_all(calls: dict[Hashable, Callable[[], Any]], deadline: float) -> dict[Hashable, Outcome]:
    results: "queue.Queue[tuple[Hashable, Outcome]]" = queue.Queue()

    def worker(key: Hashable, call: Callable[[], Any]) -> None:
        try:
            results.put((key, Outcome(value=call())))
        except BaseException as exc:  # handed to the caller, who decides
            results.put((key, Outcome(error=exc)))

    for key, call in calls.items():
        threading.Thread(target=worker, args=(key, call), daemon=True, name=f"dcctl-{key}").start()
    outcomes: dict[Hashable, Outcome] = {}
    end = time.monotonic() + deadline
    while len(outcomes) < len(calls):
        remaining = end - time.monotonic()
        if remaining <= 0:
            break
        try:
            key, outcome = results.get(timeout=remaining)
        except queue.Empty:
            break
        outcomes[key] = outcome
    for key in calls:
        outcomes.setdefault(key, Outcome(timed_out=True))
    return outcomes
