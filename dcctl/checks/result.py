"""Check results: OK/WARN/CRIT/UNKNOWN with the measured value and the threshold, and the
monitoring-plugin exit status of a set of them."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Iterable


class Status(enum.IntEnum):
    """Values are the monitoring-plugin exit codes."""

    OK = 0
    WARN = 1
    CRIT = 2
    UNKNOWN = 3

    @property
    def severity(self) -> int:
        """Ordering for 'worst': CRIT > WARN > UNKNOWN > OK (a known problem outranks an unknown)."""
        return {Status.OK: 0, Status.UNKNOWN: 1, Status.WARN: 2, Status.CRIT: 3}[self]


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str  # one sentence an operator can act on
    site: str | None = None
    value: Any = None
    threshold: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "site": self.site, "status": self.status.name, "value": self.value,
                "threshold": self.threshold, "detail": self.detail}


def worst(results: Iterable[CheckResult]) -> Status:
    statuses = [r.status for r in results]
    return max(statuses, key=lambda s: s.severity) if statuses else Status.UNKNOWN


def ordered(results: Iterable[CheckResult]) -> list[CheckResult]:
    """Worst first, then by name and site, so the table reads top-down by urgency."""
    return sorted(results, key=lambda r: (-r.status.severity, r.name, r.site or ""))
