"""Synchronous replication: which value of synchronous_standby_names each node should have (pure),
and the one statement that sets it.

With two sites the rule needs no knowledge of operations: a node names its PEER's application
name (the standby's primary_conninfo uses its site name). A standby ignores the setting, so a
standby that names its peer is already right the moment it is promoted, after a switchover as
after a failover, and pg_basebackup / pg_rewind copying the other node's postgresql.auto.conf is
corrected by the agent before it matters. The agents keep it so (dcctl/agent/watcher.py); the
policy for a standby that does not stream is `replication.mode`:

- async: dcctl leaves synchronous_standby_names alone;
- sync: the primary's agent clears it after `relax_after` seconds without a streaming standby,
  and sets it again once the standby streams;
- strict: never cleared by the agent: writes wait while the standby is away.

In both synchronous modes a failover is the operator's explicit decision to run on one site: once
the recorded generation names this node the primary and its peer fenced, the agent clears the
setting at once, and sets it again when the rejoined peer streams.
"""
from __future__ import annotations

from dataclasses import dataclass

from dcctl.ops.generation import Generation
from dcctl.pg import queries


def standby_names(peer_site: str) -> str:
    """The synchronous_standby_names value that names the peer's walreceiver.

    >>> standby_names("backup")
    '"backup"'
    >>> standby_names('odd"name')
    '"odd""name"'
    """
    return '"' + peer_site.replace('"', '""') + '"'


@dataclass(frozen=True)
class SyncFacts:
    """What the watch read from its own node in one round trip, and what it remembers."""

    site: str
    peer: str
    in_recovery: bool
    timeline: int
    current: str  # synchronous_standby_names now
    peer_streaming: bool  # the peer streams from this node and has replied since the last relax
    waited: float  # seconds the longest commit now waiting for a synchronous standby has waited
    unseen_for: float  # seconds since the peer last streamed from this node (or the watch started)
    watched_for: float  # seconds this watch has run without a gap (a frozen agent knows nothing of the gap)


@dataclass(frozen=True)
class SyncDecision:
    value: str | None  # the value to set; None: leave it as it is
    why: str  # one sentence, logged when value is not None


def decide(mode: str, relax_after: float, facts: SyncFacts, recorded: Generation | None) -> SyncDecision:
    """The value synchronous_standby_names should take now (pure).

    A standby whose walreceiver is frozen or cut off still shows as `streaming` on the primary
    until wal_sender_timeout: what tells is that commits wait (`waited`), or that no reply came.
    """
    if mode == "async":
        return SyncDecision(None, "replication.mode is async: synchronous_standby_names is not managed")
    want = standby_names(facts.peer)
    if facts.in_recovery:
        if facts.current == want:
            return SyncDecision(None, f"standby {facts.site} names {facts.peer}, ready for its promotion")
        return SyncDecision(want, f"standby {facts.site} will wait for {facts.peer} once promoted")
    if facts.current == "":
        if facts.peer_streaming:
            return SyncDecision(want, f"{facts.peer} streams from {facts.site} again: commits wait for it again")
        return SyncDecision(None, f"{facts.site} runs without a synchronous standby until {facts.peer} streams")
    if recorded and recorded.primary == facts.site and facts.peer in recorded.fenced \
            and recorded.generation >= facts.timeline and not facts.peer_streaming:
        return SyncDecision("", f"{facts.peer} was fenced by the failover that made {facts.site} primary "
                                f"(generation {recorded.generation}): commits stop waiting for it until it is "
                                f"rejoined and streams")
    if mode == "sync" and facts.watched_for >= relax_after:
        if facts.waited >= relax_after:
            return SyncDecision("", f"commits on {facts.site} have waited {facts.waited:.1f} s for {facts.peer} "
                                    f"(relax_after {relax_after:g} s): they stop waiting for it and are on "
                                    f"{facts.site} alone until it streams again")
        if not facts.peer_streaming and facts.unseen_for >= relax_after:
            return SyncDecision("", f"{facts.peer} has not streamed from {facts.site} for {facts.unseen_for:.1f} s "
                                    f"(relax_after {relax_after:g} s): commits stop waiting for it; they are on "
                                    f"{facts.site} alone until it streams again")
    if facts.current != want:
        return SyncDecision(want, f"{facts.site} named {facts.current!r}, not its peer {facts.peer}")
    return SyncDecision(None, f"commits on {facts.site} wait for {facts.peer}")


def apply(conn, value: str) -> None:
    """Set synchronous_standby_names on a node (primary or standby) and reload: no restart needed.
    Commits waiting for a standby are released at once when the value becomes empty."""
    conn.execute(queries.set_synchronous_standby_names(value))
    conn.execute(queries.RELOAD_CONF)


def release_after_failover(ctx) -> dict[str, str]:
    """For the failover, right after the new primary accepts writes: stop waiting for the fenced
    old primary at once instead of at the agent's next watch. A no-op in async mode."""
    if ctx.service.replication.mode == "async":
        return {}
    apply(ctx.conn(ctx.new_primary), "")
    return {"synchronous_standby_names": "''"}


def name_peer_before_promotion(ctx) -> dict[str, str]:
    """For the switchover, before promotion: the standby about to be promoted names the old primary,
    so that its first commits as primary already wait for it (the agent would do it within one
    watch). A no-op in async mode."""
    if ctx.service.replication.mode == "async":
        return {}
    value = standby_names(ctx.old_primary)
    apply(ctx.conn(ctx.new_primary), value)
    return {"synchronous_standby_names": value}
