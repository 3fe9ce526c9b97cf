"""The pooler check of `dcctl check` (pure): each PgBouncer of the service answers, points at the
current primary (SHOW DATABASES host and port), is not paused, and how many clients wait.

A service without poolers gets no result. The consoles are read by the caller (cli/check_cmd.py,
through dcctl/pooler/control.py); this module only judges what they showed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dcctl.checks.result import CheckResult, Status
from dcctl.pooler.decide import PoolerState

if TYPE_CHECKING:  # catalog imports this module to list its checks
    from dcctl.checks.catalog import Facts


@dataclass(frozen=True)
class PoolerFact:
    name: str
    state: PoolerState | None  # None: its admin console did not answer
    error: str | None = None
    stuck_pause_after: float = 60.0


def pooler_results(facts: list[PoolerFact], primary: tuple[str, int] | None) -> list[CheckResult]:
    results = []
    for fact in facts:
        where = f"pooler {fact.name}"
        state = fact.state
        if state is None:
            results.append(CheckResult("pooler", Status.CRIT, f"{where}: {fact.error}"))
            continue
        if state.missing:
            results.append(CheckResult("pooler", Status.CRIT, f"{where} does not serve {', '.join(state.missing)} "
                                       f"(SHOW DATABASES): applications cannot connect through it"))
        if primary is None:
            results.append(CheckResult("pooler", Status.UNKNOWN, f"{where} points at {state.describe_target()}; "
                                       f"no single primary to compare with"))
        elif not state.points_at(*primary):
            results.append(CheckResult("pooler", Status.CRIT, f"{where} points at {state.describe_target()}, not "
                                       f"at the primary {primary[0]}:{primary[1]}: its clients' writes fail",
                                       value=state.describe_target(), threshold=f"{primary[0]}:{primary[1]}"))
        if state.any_paused:
            results.append(CheckResult("pooler", Status.WARN, f"{where} is paused: its clients wait (a switchover in "
                                       f"progress, or one that died: the agent resumes it after "
                                       f"{fact.stuck_pause_after:g} s unless an operation holds the lock)",
                                       value=state.clients_waiting))
        elif primary is not None and state.points_at(*primary) and not state.missing:
            results.append(CheckResult("pooler", Status.OK, f"{where} points at the primary {primary[0]}:"
                                       f"{primary[1]}, not paused; {state.clients_waiting} client(s) waiting",
                                       value=state.clients_waiting))
    return results


def poolers(f: Facts) -> list[CheckResult]:
    if f.poolers is None:
        return []
    if not f.poolers:
        return [CheckResult("pooler", Status.OK, "no poolers configured for this service: nothing to check")]
    primary = f.primary
    address = f.pooler_primary if primary is not None else None
    return pooler_results(f.poolers, address)
