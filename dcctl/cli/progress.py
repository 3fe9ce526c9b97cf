"""A Reporter that draws steps and a rich progress bar for byte-counting steps."""
from __future__ import annotations

import click

from dcctl.plan.step import Step


class ConsoleReporter:
    def __init__(self) -> None:
        self._bar = None
        self._task = None

    def step_started(self, index: int, total: int, step: Step) -> None:
        where = f"[{step.site}] " if step.site else ""
        click.echo(f"[{index}/{total}] {where}{step.describe} ...", err=True)

    def step_finished(self, index: int, total: int, step: Step, seconds: float) -> None:
        self._close_bar()
        click.echo(f"[{index}/{total}] done in {seconds:.1f} s", err=True)

    def progress(self, done: int, total: int | None) -> None:
        from rich.progress import (BarColumn, DownloadColumn, Progress, TimeRemainingColumn,
                                   TransferSpeedColumn)

        if self._bar is None:
            from rich.console import Console

            self._bar = Progress(BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=False)
            self._bar.start()
            self._task = self._bar.add_task("copy", total=total)
        self._bar.update(self._task, completed=done, total=total)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
