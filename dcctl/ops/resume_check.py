"""Should `dcctl resume` touch this operation at all? Pure decisions over what the journal says
happened and one fresh ServiceView: the world may have moved on (a hand repair, another
operation, a promotion) since the operation stopped, and acting on an old journal in a new world
is how a resume creates a second primary. Every reason to refuse is a sentence; a refused resume
marks the operation superseded."""
from __future__ import annotations

from collections.abc import Collection
from typing import Any

from dcctl.model import Role, ServiceView, SiteStatus

# Observations in which the journal records a timeline a primary of the service had (a rejoin's
# old_timeline is the diverged node's own, so it does not count).
TIMELINE_KEYS = {"switchover": ("timeline_before", "timeline_after", "shutdown_timeline", "generation"),
                 "failover": ("timeline_before", "timeline_after", "generation"),
                 "rejoin": ("primary_timeline", "generation")}
PROMOTING_STEPS = ("promote",)


def resume_refusals(header: dict[str, Any], started: list[str], ended: set[str], observed: dict[str, Any],
                    view: ServiceView, recorded: Any | None, own_parts: Collection[str] = (),
                    parts_timeline: int | None = None) -> list[str]:
    """Reasons the journal's operation no longer fits the world; [] means resume may act.

    `recorded` is the generation record (dcctl.ops.generation.Generation) or None; `own_parts` the
    ids of the operations a composite one (the full drill) ran as its parts: what they recorded is
    its own doing, and so is the newest timeline they saw or may have made (`parts_timeline`). An unreachable site is no evidence either way: only what was seen can refuse."""
    op, kind = header.get("op"), header.get("kind")
    old, new = header.get("old_primary"), header.get("new_primary")
    reasons = []
    if (recorded is not None and recorded.operation not in (None, op, *own_parts)
            and recorded.at > header.get("ts", 0)):
        reasons.append(f"operation {recorded.operation} recorded generation {recorded.generation} (primary "
                       f"{recorded.primary}) after this one stopped")
    # The recorded generation counts too, whoever wrote it (one written after this operation
    # started was refused above): a standby whose WAL receiver is gone reports the timeline of
    # its last restartpoint, which can lag the service's true one.
    newest = newest_known_timeline(observed, TIMELINE_KEYS.get(kind or "", ()), recorded)
    if newest is not None:
        allowed = max(may_have_made(newest, started, observed), parts_timeline or 0)
        for site in view.primaries():
            timeline = site.answered().timeline
            if timeline is not None and timeline > allowed:
                reasons.append(f"site {site.site} is a primary on timeline {timeline}, newer than any "
                               f"this operation saw or made ({allowed}): another promotion happened since")
    if old in _sites(view) and new in _sites(view):
        reasons += _kind_refusals(kind, started, ended, view.site(old), view.site(new))
    return reasons


def _kind_refusals(kind: str | None, started: list[str], ended: set[str], old: SiteStatus,
                   new: SiteStatus) -> list[str]:
    reasons = []
    promoted = "promote" in started
    if kind == "switchover" and not promoted:
        # Rolling back restarts the old primary as the primary: only if nobody promoted the standby.
        if new.role is Role.PRIMARY:
            reasons.append(f"site {new.site} is already a primary although this switchover never promoted it: "
                           f"rolling back would start {old.site} as a second primary")
        if old.role is Role.STANDBY:
            reasons.append(f"site {old.site} runs as a standby now: someone changed its role since")
    if kind in ("switchover", "failover") and (promoted or "fence_old_primary" in started):
        if old.role is Role.PRIMARY and new.reachable and old.reachable:
            reasons.append(f"site {old.site} runs as a primary again although this {kind} stopped it: someone "
                           f"restarted it (it may have taken writes)")
    if kind == "rejoin":
        if new.role is Role.STANDBY:
            reasons.append(f"site {new.site}, the primary this rejoin follows, is a standby now")
        if old.node is not None and "start_old_primary" not in started:
            reasons.append(f"site {old.site} runs ({old.role.value}"
                           + (f", streaming from {old.node.upstream}" if old.node.receiver_status == "streaming"
                              else "") + ") although this rejoin never started it: it was repaired or started "
                           "by hand")
    return reasons


def may_have_made(newest: int, started: Collection[str], observed: dict[str, Any]) -> int:
    """The newest timeline an operation saw, or the next one if it started promoting and did not
    see where that ended.

    >>> may_have_made(3, ["promote"], {}), may_have_made(3, ["promote"], {"timeline_after": 4}), may_have_made(3, [], {})
    (4, 3, 3)
    """
    return newest + (1 if any(s in started for s in PROMOTING_STEPS) and "timeline_after" not in observed else 0)


def newest_known_timeline(observed: dict[str, Any], keys: tuple[str, ...], own_record: Any | None) -> int | None:
    """
    >>> newest_known_timeline({"timeline_before": 3, "timeline_after": 4, "x": 9}, TIMELINE_KEYS["switchover"], None)
    4
    >>> newest_known_timeline({}, (), None) is None
    True
    """
    values = [observed[key] for key in keys if isinstance(observed.get(key), int)]
    if own_record is not None:
        values.append(own_record.generation)
    return max(values) if values else None


def _sites(view: ServiceView) -> set[str]:
    return {s.site for s in view.sites}
