"""Pure decisions of a site operation: which services are already where it takes them, what a
service's outcome means for the next group, and what a site journal says happened.

A site journal (STATE_DIR/operations/SITEOP/journal.jsonl, written with ops/journal.py) holds:
  operation        header: op, kind (site-switchover | site-failover | site-rejoin | site-drill),
                   service "(site)", old_primary / new_primary (the sites), args, groups
                   ([{services, on_failure}]), site_operation: true
  lock             the site lock was taken
  plan             services: {name: {group, operation, skipped, headline, steps}}
  group_start      group (0-based), services
  service_skipped  group, service, reason ("already there")
  service_start    group, service, operation (the child operation's id)
  service_end      group, service, operation, outcome, error
  group_end        group, outcome (success | stopped | halted | partial), seconds
  interrupt_requested / halt (reason)   as in a single operation's journal
  resume           pid
  finish           outcome (success | partial | stopped | refused), reason, rto_seconds (the site-level
                   RTO: plan start -> last service writable; null when no service was promoted)
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from dcctl.model import Role, ServiceView

SITE_KINDS = ("switchover", "failover", "rejoin", "drill")
SITE_SERVICE = "(site)"  # the header's service field: a site operation is no one service's
DONE = ("success", "skipped")
STOP_AND_RESUME = ("halted", "unfinished", "superseded")  # past (or maybe past) a point of no return


def site_operation_id(kind: str, now: datetime | None = None) -> str:
    """site-switchover-20261204-171500-1a2b"""
    now = now or datetime.now(timezone.utc)
    return f"site-{kind}-{now.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def is_site_operation(op_id: str) -> bool:
    return op_id.startswith("site-")


def already_there(kind: str, view: ServiceView, target: str, args: dict[str, Any]) -> str | None:
    """Why this service needs no part in the site operation, or None.

    Switchover and failover: its only primary already runs at the target site. Rejoin: the site
    being rejoined already streams from the other site's primary (unless --force). A drill
    always runs.
    """
    if kind in ("switchover", "failover"):
        primaries = [s.site for s in view.primaries()]
        if primaries == [target]:
            return f"already there: its primary runs at {target}"
        return None
    if kind == "rejoin" and not args.get("force"):
        node = view.site(target)
        others = [s for s in view.sites if s.site != target]
        if node.role is Role.STANDBY and node.node is not None and node.node.receiver_status == "streaming" \
                and all(s.role is Role.PRIMARY for s in others):
            return f"already there: {target} streams as a standby of {others[0].site}"
    return None


def stop_reason(group_index: int, on_failure: str, outcomes: dict[str, str]) -> str | None:
    """Why no further group may start after this one, or None.

    A service that stopped past its point of no return (halted, or cut off) stops the plan
    whatever on_failure says: `dcctl resume` drives it forward first. One that failed before it
    (rolled back, refused) stops the plan unless the group says on_failure: continue.
    """
    halted = sorted(name for name, outcome in outcomes.items() if outcome in STOP_AND_RESUME)
    if halted:
        return f"group {group_index + 1}: {', '.join(halted)} stopped past the point of no return"
    failed = sorted(name for name, outcome in outcomes.items() if outcome not in DONE)
    if failed and on_failure == "stop":
        return f"group {group_index + 1}: {', '.join(failed)} did not complete (on_failure: stop)"
    return None


def group_outcome(on_failure: str, outcomes: dict[str, str]) -> str:
    if all(outcome in DONE for outcome in outcomes.values()):
        return "success"
    if any(outcome in STOP_AND_RESUME for outcome in outcomes.values()):
        return "halted"
    return "stopped" if on_failure == "stop" else "partial"


@dataclass
class SiteState:
    """What a site journal says happened (pure reading of its entries)."""

    header: dict[str, Any]
    groups_started: set[int] = field(default_factory=set)
    groups_ended: dict[int, str] = field(default_factory=dict)
    children: dict[str, str] = field(default_factory=dict)  # service -> its latest child operation id
    outcomes: dict[str, str] = field(default_factory=dict)  # service -> outcome recorded at its end
    halted: str | None = None
    outcome: str | None = None

    @classmethod
    def read(cls, entries: list[dict[str, Any]]) -> "SiteState":
        state = cls(header=entries[0])
        for entry in entries[1:]:
            event = entry["event"]
            if event == "group_start":
                state.groups_started.add(entry["group"])
            elif event == "group_end":
                state.groups_ended[entry["group"]] = entry.get("outcome", "")
            elif event == "service_start":
                state.children[entry["service"]] = entry["operation"]
                state.outcomes.pop(entry["service"], None)
            elif event in ("service_end", "service_skipped"):
                state.outcomes[entry["service"]] = entry.get("outcome", "skipped")
            elif event == "halt":
                state.halted = entry.get("reason")
            elif event == "finish":
                state.outcome = entry["outcome"]
        return state

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    @property
    def groups(self) -> list[dict[str, Any]]:
        return list(self.header.get("groups") or [])


def final_outcome(group_outcomes: list[str]) -> str:
    """The site operation's outcome from its groups' (those that ran)."""
    if any(outcome == "stopped" for outcome in group_outcomes):
        return "stopped"
    if any(outcome == "partial" for outcome in group_outcomes):
        return "partial"
    return "success"
