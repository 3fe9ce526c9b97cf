"""The two decisions file sync takes before it moves anything (pure, doctested).

1. Which way files flow: the site whose PostgreSQL is the one primary pushes to the other, and
   a site refuses to push when doing so could overwrite newer files (a stale primary, two
   primaries, a fenced peer). Each decision is a sentence, logged when it changes.
2. The mass-deletion guard: a batch or a reconciliation that would delete more than a share of
   the receiving store is refused (an unmounted volume or a wiped folder looks exactly like
   that), until an operator allows it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from dcctl.model import Generation, NodeStatus, ServiceView


@dataclass(frozen=True)
class Direction:
    active: bool  # True: `site` pushes to `peer` now
    reason: str  # one sentence
    timeline: int | None = None  # the pushing site's timeline when it was found to be the primary

    def __str__(self) -> str:
        return self.reason


def push_decision(site: str, peer: str, own: NodeStatus | None, own_error: str | None, peer_node: NodeStatus | None,
                  recorded: Generation | None) -> Direction:
    """Whether the agent at `site` pushes its file stores to `peer` (tests/unit/test_filesync_pure.py
    has one case per sentence)."""
    if own is None:
        return Direction(False, f"PostgreSQL at {site} did not answer ({own_error}): not pushing")
    if own.in_recovery:
        return Direction(False, f"{site} is a standby: {peer} pushes")
    if recorded is not None and recorded.primary != site and (own.timeline or 0) < recorded.generation:
        return Direction(False, f"{site} is a stale primary (timeline {own.timeline}, but generation "
                                f"{recorded.generation} belongs to {recorded.primary}): never pushing from it")
    if peer_node is not None and not peer_node.in_recovery:
        return Direction(False, f"{site} and {peer} both accept writes: not pushing (split brain?)")
    if recorded is not None and peer in recorded.fenced and recorded.primary == site:
        return Direction(False, f"{peer} was fenced by {recorded.operation or 'a failover'}: files flow to it again "
                                f"after `dcctl rejoin --site {peer}`")
    return Direction(True, f"{site} is the primary: pushing to {peer}", own.timeline)


def direction_from_view(view: ServiceView) -> tuple[str | None, str | None, str]:
    """(source, target, why) for a command run by an operator: the one primary pushes."""
    primaries = view.primaries()
    if len(primaries) > 1:
        return None, None, f"{' and '.join(p.site for p in primaries)} both accept writes: no direction is safe"
    if not primaries:
        return None, None, "no site runs a writable primary: no direction is known"
    source = primaries[0].site
    others = [s for s in view.sites if s.site != source]
    target = others[0].site
    prefix = "" if others[0].node is not None else f"{target}: PostgreSQL did not answer; "
    return source, target, f"{prefix}{source} is the primary"


def mass_delete_limit(receiver_entries: int, share: float, floor: int) -> int:
    """Most deletions allowed at once: `share` of the receiving store, never less than `floor`.

    >>> mass_delete_limit(100000, 0.10, 10), mass_delete_limit(30, 0.10, 10), mass_delete_limit(0, 0.1, 0)
    (10000, 10, 0)
    """
    return max(floor, math.floor(receiver_entries * share))


@dataclass(frozen=True)
class DeleteVerdict:
    allowed: bool
    deletions: int
    limit: int
    reason: str


def guard(deletions: int, receiver_entries: int, share: float, floor: int, *, already: int = 0,
          allow: bool = False) -> DeleteVerdict:
    """Refuse when `already` (deleted since the last reconciliation) + `deletions` exceeds the limit.

    >>> guard(5, 1000, 0.1, 10).allowed
    True
    >>> v = guard(1000, 1000, 0.1, 10); v.allowed, v.reason
    (False, 'would delete 1000 of 1000 entries of the receiving store (100%), more than the limit of 100 (10%): refused until an operator checks the source and runs `dcctl filesync run --allow-mass-delete`')
    >>> guard(60, 1000, 0.1, 10, already=50).allowed, guard(1000, 1000, 0.1, 10, allow=True).allowed
    (False, True)
    """
    limit = mass_delete_limit(receiver_entries, share, floor)
    total = already + deletions
    if allow or total <= limit:
        why = "allowed by the operator (--allow-mass-delete)" if allow and total > limit else "within the limit"
        return DeleteVerdict(True, deletions, limit, f"{deletions} deletion(s): {why}")
    since = f" ({already} already since the last reconciliation)" if already else ""
    share_text = f"{total / receiver_entries:.0%}" if receiver_entries else "all of it"
    return DeleteVerdict(False, deletions, limit,
                         f"would delete {total} of {receiver_entries} entries of the receiving store ({share_text})"
                         f"{since}, more than the limit of {limit} ({share:.0%}): refused until an operator checks "
                         f"the source and runs `dcctl filesync run --allow-mass-delete`")
