"""Steps as data, and the plain runner that executes a list of them.

A Step says what it will do (shown by --dry-run) and holds the action that does it. When a
step fails, the error names the step and what the operator can do next.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol

from dcctl.errors import DcctlError


@dataclass(frozen=True)
class Step:
    name: str  # short, stable: create_slot, basebackup, ...
    site: str | None
    describe: str  # one sentence, with the concrete targets
    action: Callable[["Reporter"], object]
    command: str | None = None  # the concrete command, shown by --dry-run


class Reporter(Protocol):
    def step_started(self, index: int, total: int, step: Step) -> None: ...

    def step_finished(self, index: int, total: int, step: Step, seconds: float) -> None: ...

    def progress(self, done: int, total: int | None) -> None: ...


class QuietReporter:
    def step_started(self, index, total, step):
        pass

    def step_finished(self, index, total, step, seconds):
        pass

    def progress(self, done, total):
        pass


class StepFailed(DcctlError):
    def __init__(self, index: int, total: int, step: Step, cause: DcctlError | Exception, hint: str | None):
        self.step = step
        self.cause = cause
        where = f" at site {step.site}" if step.site else ""
        reason = cause.message if isinstance(cause, DcctlError) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"step {index}/{total} '{step.name}'{where} failed: {reason}", hint=hint,
                         detail=getattr(cause, "detail", None))
        self.exit_code = getattr(cause, "exit_code", self.exit_code)


def run_steps(steps: list[Step], reporter: Reporter, on_failure_hint: str | None = None) -> list[tuple[str, float]]:
    """Run steps in order; returns (name, seconds) of each. Stops at the first failure."""
    timings = []
    for index, step in enumerate(steps, start=1):
        reporter.step_started(index, len(steps), step)
        started = time.monotonic()
        try:
            step.action(reporter)
        except (DcctlError, OSError) as exc:
            raise StepFailed(index, len(steps), step, exc, on_failure_hint) from exc
        seconds = time.monotonic() - started
        timings.append((step.name, seconds))
        reporter.step_finished(index, len(steps), step, seconds)
    return timings
