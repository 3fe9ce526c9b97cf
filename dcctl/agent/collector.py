"""Background work of the agent, and the cache a scrape reads.

A **Task** is anything the agent runs in the background and reports on: it starts its own
thread, stops on request, and hands out its current samples and health without blocking.
A **Source** is the common kind of task's work: one blocking `collect()` that returns a
snapshot; `PeriodicCollector` runs it every `interval` seconds in its own thread and keeps the
last snapshot's samples, so a scrape never waits for a collection. A later task (file sync)
implements Task itself; a later collector (drills) is just a Source.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from dcctl.agent.metrics import Sample, sample
from dcctl.errors import DcctlError

log = logging.getLogger("dcctl.agent")


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str  # one sentence: what the task last did, or why it is unhealthy


class Task(Protocol):
    name: str

    def start(self) -> None:
        """Start the task's own thread(s); return at once."""

    def run_once(self) -> bool:
        """One round of the work in the caller's thread (`dcctl agent run --once`); True if it succeeded."""

    def stop(self, timeout: float) -> None:
        """Ask the task to stop and wait at most `timeout` seconds for it."""

    def samples(self, now: float) -> list[Sample]:
        """The current values, from memory: called on every scrape, must never block."""

    def health(self, now: float) -> Health: ...


class Source(Protocol):
    collector: str  # value of the `collector` label
    service: str
    interval: float  # seconds between the starts of two collections
    timeout: float  # the longest one collect() may take (it enforces this itself)

    def collect(self) -> Any:
        """Blocking: gather one snapshot. Raising counts as a failed run."""

    def samples(self, snapshot: Any) -> list[Sample]:
        """Pure: the snapshot's metric samples."""

    def changes(self, old: Any | None, new: Any) -> list[str]:
        """Pure: one sentence per change worth a log line (old is None on the first success)."""


class PeriodicCollector:
    """Runs `source.collect()` every `source.interval` seconds and keeps the result.

    Values older than `stale_after` are withheld rather than passed off as fresh: only the
    dcctl_collector_* series remain, and health() reports the collector as stale.
    """

    def __init__(self, source: Source):
        self.source = source
        self.name = f"{source.collector} {source.service}"
        self.stale_after = 2 * source.interval + source.timeout
        self._labels = {"collector": source.collector, "service": source.service}
        self._lock = threading.Lock()
        self._snapshot: Any = None
        self._samples: list[Sample] = []
        self._last_success = 0.0
        self._last_duration = 0.0
        self._last_ok: bool | None = None
        self._last_error: str | None = None
        self._runs = 0
        self._failures = 0
        self._running_since: float | None = None  # time.monotonic() the run in progress started
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the background loop ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"dcctl-agent-{self.name}")
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """A collection in progress is bounded by its own timeout; past `timeout` it is abandoned
        (daemon thread), never waited for."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.run_once()
            self._stop.wait(max(0.0, self.source.interval - (time.monotonic() - started)))

    def run_once(self) -> bool:
        """One collection; True if it succeeded. Never raises: a failure is counted and logged."""
        started_wall, started = time.time(), time.monotonic()
        self._running_since = started
        try:
            snapshot = self.source.collect()
            samples = self.source.samples(snapshot)
            events = self.source.changes(self._snapshot, snapshot)
        except Exception as exc:  # a failed run must not end the agent; it is counted and logged
            self._running_since = None
            why = exc.message if isinstance(exc, DcctlError) else f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._runs += 1
                self._failures += 1
                self._last_duration = time.monotonic() - started
                changed = self._last_ok is not False or why != self._last_error
                self._last_ok, self._last_error = False, why
            if changed:
                log.error("collector %s failed: %s", self.name, why, exc_info=log.isEnabledFor(logging.DEBUG))
            return False
        self._running_since = None
        with self._lock:
            recovered = self._last_ok is False
            self._runs += 1
            self._snapshot, self._samples = snapshot, samples
            self._last_success = started_wall
            self._last_duration = time.monotonic() - started
            self._last_ok, self._last_error = True, None
        if recovered:
            log.warning("collector %s succeeds again", self.name)
        for event in events:
            log.info("%s", event)
        return True

    # ---- what a scrape reads ------------------------------------------------------------

    def samples(self, now: float) -> list[Sample]:
        with self._lock:
            labels = self._labels
            out = [
                sample("dcctl_collector_up", bool(self._last_ok), **labels),
                sample("dcctl_collector_last_success_timestamp_seconds", self._last_success, **labels),
                sample("dcctl_collector_last_duration_seconds", self._last_duration, **labels),
                sample("dcctl_collector_stale_after_seconds", self.stale_after, **labels),
                sample("dcctl_collector_runs_total", self._runs, **labels),
                sample("dcctl_collector_failures_total", self._failures, **labels),
            ]
            if self._fresh(now):
                out.extend(self._samples)
        return out

    def health(self, now: float) -> Health:
        with self._lock:
            if self._last_success == 0.0:
                why = f": {self._last_error}" if self._last_error else " yet"
                return Health(False, f"{self.name}: no successful collection{why}")
            age = now - self._last_success
            if not self._fresh(now):
                return Health(False, f"{self.name}: stale, last success {age:.0f} s ago (limit {self.stale_after:g} s)"
                                     + (f"; last error: {self._last_error}" if self._last_error else ""))
            state = "ok" if self._last_ok else f"last run failed ({self._last_error})"
            return Health(True, f"{self.name}: {state}, last success {age:.1f} s ago")

    def stuck(self) -> str | None:
        """Why this collector is hung (a run in progress for longer than `stale_after`), None if it is not.

        Every run bounds itself by its timeout, so one that lasts longer is hung: a restart of the
        agent (systemd's watchdog) is the only way out of it."""
        since = self._running_since
        if since is None:
            return None
        running = time.monotonic() - since
        if running <= self.stale_after:
            return None
        return f"{self.name}: one collection has run for {running:.0f} s (limit {self.stale_after:g} s)"

    def _fresh(self, now: float) -> bool:
        return self._last_success > 0 and now - self._last_success <= self.stale_after
