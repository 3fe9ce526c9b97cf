"""The generation watch: every `agent.watch_interval` seconds (0.5 by default), far more often
than the status collection, the agent asks its own PostgreSQL and its peer's for their role and
timeline (one short query each) and reads the recorded generation at its site. Then:

- its own node runs as a primary that another one has superseded (judge_primaries): stop it at
  once (immediate, PID-verified) and write standby.signal;
- its own node is a primary that has reached neither the peer's PostgreSQL nor its agent, nor the
  witness, for `agent.isolation_fence_after` seconds as a primary: the same (off unless configured);
- otherwise keep synchronous_standby_names as `replication.mode` wants it (dcctl/ops/sync_rep.py).

A frozen host that is thawed resumes this loop within one interval; that is the window an
asynchronous primary can still acknowledge commits in (docs/reliability.md, section 3).
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from dcctl.agent.collector import Health
from dcctl.agent.fencing import stop_own_postgres
from dcctl.agent.metrics import Sample, sample
from dcctl.agent.setup import AgentSetup
from dcctl.errors import ConfigError, DcctlError
from dcctl.generation_rules import judge_primaries, newest
from dcctl.model import Generation
from dcctl.ops import sync_rep
from dcctl.ops.generation import read_local, read_path, site_path
from dcctl.parallel import run_all
from dcctl.pg import queries
from dcctl.pg.session import connect
from dcctl.transport import Transport, open_transport

log = logging.getLogger("dcctl.agent")

TRANSPORT_RETRY = 30.0  # seconds before the watch tries again to open its held connection to its site
# Seconds one round waits for its answers. A peer that has not answered by then counts as not
# answering; its connection attempt is abandoned (libpq's shortest connect timeout is 2 s), so a
# dead peer does not slow the rounds that fence or relax.
PROBE_DEADLINE = 1.0


@dataclass(frozen=True)
class Reading:
    in_recovery: bool
    timeline: int
    standby_names: str = ""
    peer_reply_at: datetime | None = None  # last reply of the peer's walreceiver, if it is connected
    sync_wait: float = 0.0  # seconds the longest commit now waiting for the synchronous standby has waited
    server_now: datetime | None = None


@dataclass(frozen=True)
class Round:
    """What one watch round observed."""

    own: Reading | None  # None: this site's PostgreSQL did not answer
    peer: Reading | None  # None: the peer's PostgreSQL did not answer
    peer_agent: bool  # the peer's agent answered (asked only when isolation fencing is on)
    witness: bool | None  # None: no witness configured (or not asked)
    recorded: Generation | None


def fence_reason(site: str, peer: str, r: Round, *, peer_unseen_for: float, isolation_after: float | None,
                 fence_stale: bool) -> tuple[str, str] | None:
    """(reason label, sentence) when this site's PostgreSQL must be stopped now, else None (pure)."""
    if r.own is None or r.own.in_recovery:
        return None
    primaries = {site: r.own.timeline}
    if r.peer is not None and not r.peer.in_recovery:
        primaries[peer] = r.peer.timeline
    why = judge_primaries(primaries, r.recorded).stale.get(site)
    if why and fence_stale:
        return "stale", f"STALE PRIMARY: {why}"
    peer_fenced_for_us = r.recorded is not None and r.recorded.primary == site and peer in r.recorded.fenced
    if peer_fenced_for_us:
        return None  # a failover made this site the primary and declared the peer down: it is expected gone
    if isolation_after is not None and peer_unseen_for >= isolation_after and not r.witness:
        witness = "nor the witness " if r.witness is False else ""
        return "isolated", (f"ISOLATED PRIMARY: {site} has reached neither {peer}'s PostgreSQL nor its agent "
                            f"{witness}for {peer_unseen_for:.1f} s (isolation_fence_after {isolation_after:g} s): "
                            f"{peer} may have been promoted, so {site} stops taking writes")
    return None


def parse_address(text: str, where: str) -> tuple[str, int]:
    """
    >>> parse_address("10.0.0.9:2379", "witness")
    ('10.0.0.9', 2379)
    """
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError([f"{where}: expected host:port, got {text!r}"])
    return host.strip("[]"), int(port)


def tcp_open(address: tuple[str, int], timeout: float) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def process_answers(address: tuple[str, int], timeout: float) -> bool:
    """True if a process answers at address: any reply, even an error or a close, within timeout.

    A connect alone proves nothing: the kernel completes it for a listening socket whose process
    is frozen or hung."""
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError:
        return False
    with sock:
        try:
            sock.settimeout(timeout)
            sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            sock.recv(1)
            return True  # a reply, or a close by the process
        except ConnectionError:
            return True  # reset by a live process (e.g. a TLS listener refusing plain HTTP)
        except OSError:
            return False  # no reply within timeout: frozen, hung, or cut off


class GenerationWatch:
    """A Task (dcctl/agent/collector.py) that runs the watch in its own thread."""

    def __init__(self, setup: AgentSetup, service: str):
        self.setup = setup
        self.service = service
        self.name = f"watch {service}"
        config = setup.config.services[service]
        self.site = setup.site
        self.peer = next(name for name in config.sites if name != setup.site)
        self.own_node = config.sites[self.site].postgres
        self.peer_node = config.sites[self.peer].postgres
        self.site_state_dir = config.sites[self.site].state_dir
        self.replication = config.replication
        settings = setup.agent
        self.interval = settings.watch_interval
        self.isolation_after = settings.isolation_fence_after
        self.peer_agent = self._peer_agent_address(config) if self.isolation_after is not None else None
        self.witness = parse_address(settings.witness, f"{setup.key_path}.witness") if settings.witness else None
        self._labels = {"service": service, "site": self.site}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn = None  # this site's PostgreSQL, kept open between rounds
        self._transport: Transport | None = None  # to this site, held while it is a primary, for a fence
        self._transport_retry_at = 0.0
        started = time.monotonic()
        self._peer_seen = started  # monotonic; the watch starts trusting that the peer is there
        self._peer_streamed = started
        self._peer_seen_wall = 0.0
        self._was_primary: bool | None = None
        self._primary_since = started  # monotonic; when this watch saw its node become a primary
        self._continuous_since = started
        self._last_round_mono = started
        self._relaxed_at: datetime | None = None  # server clock when this watch last relaxed
        self.gap = 2 * max(self.interval, 0.1) + 2 * PROBE_DEADLINE  # longer between rounds: the watch was frozen
        self._last_round = 0.0
        self._last_detail = "no round yet"
        self._standby_required: bool | None = None
        self._fences = {"stale": 0, "isolated": 0}
        self._peer_was_up: bool | None = None

    def _peer_agent_address(self, config) -> tuple[str, int]:
        host, port = parse_address(config.sites[self.peer].agent.listen,
                                   f"services.{self.service}.sites.{self.peer}.agent.listen")
        if host in ("0.0.0.0", "::", ""):  # it listens everywhere: reach it where its PostgreSQL is
            host = self.peer_node.host
        return host, port

    # ---- Task -----------------------------------------------------------------------------

    def start(self) -> None:
        if self.interval <= 0:
            log.info("generation watch of %s is off (agent.watch_interval 0)", self.service)
            return
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"dcctl-agent-{self.name}")
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._transport is not None:
            self._transport.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.run_once()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def run_once(self) -> bool:
        try:
            self._round()
            return True
        except Exception as exc:  # the watch must outlive any one round's surprise
            log.error("generation watch of %s failed: %s: %s", self.service, type(exc).__name__, exc,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            return False

    def samples(self, now: float) -> list[Sample]:
        with self._lock:
            out = [sample("dcctl_watch_last_success_timestamp_seconds", self._last_round, **self._labels),
                   sample("dcctl_watch_peer_last_seen_timestamp_seconds", self._peer_seen_wall, **self._labels)]
            out += [sample("dcctl_fence_total", count, reason=reason, **self._labels)
                    for reason, count in self._fences.items()]
            if self._standby_required is not None:
                out.append(sample("dcctl_sync_standby_required", self._standby_required, **self._labels))
        return out

    def health(self, now: float) -> Health:
        with self._lock:
            if self.interval <= 0:
                return Health(True, f"{self.name}: off")
            if self._last_round == 0.0:
                return Health(False, f"{self.name}: no round yet")
            age = now - self._last_round
            ok = age <= 2 * self.interval + 2 * PROBE_DEADLINE + 30  # a fence may take its stop's time
            return Health(ok, f"{self.name}: {self._last_detail}, last round {age:.1f} s ago")

    # ---- one round ------------------------------------------------------------------------

    def _round(self) -> None:
        r = self._observe()
        now = time.monotonic()
        if now - self._last_round_mono > self.gap:
            # This watch did not run for a while (the agent, or its whole host, was frozen or
            # suspended): what happened meanwhile is unknown, so nothing is relaxed before it has
            # watched relax_after seconds again.
            self._continuous_since = now
        self._last_round_mono = now
        if r.peer is not None or r.peer_agent:
            self._peer_seen = now
            self._peer_seen_wall = time.time()
        self._log_peer(r)
        primary = r.own is not None and not r.own.in_recovery
        if primary and self._was_primary is False:
            self._peer_streamed = now  # just promoted: the peer gets relax_after to stream from it
            # An isolated primary is one that has been a primary out of its peer's reach; a standby
            # promoted by a failover during a partition has the failover's record to wait for.
            self._primary_since = now
        if r.own is not None:
            self._was_primary = primary
        if r.own is not None and self._peer_streams(r.own):
            self._peer_streamed = now
        fence = fence_reason(self.site, self.peer, r, peer_unseen_for=now - max(self._peer_seen, self._primary_since),
                             isolation_after=self.isolation_after, fence_stale=self.setup.agent.fence_stale_primary)
        if fence is not None:
            reason, why = fence
            self._drop_conn()
            if stop_own_postgres(self.setup, self.service, why, self._transport):
                with self._lock:
                    self._fences[reason] += 1
            self._finish(r, f"fenced ({reason})")
            return
        if r.own is not None:
            self._manage_sync(r, now)
        if primary:
            self._hold_transport()
        self._finish(r, self._describe(r))

    def _observe(self) -> Round:
        calls = {"own": self._read_own, "peer": self._read_peer, "record": self._read_record}
        if self.isolation_after is not None:
            calls["peer_agent"] = lambda: process_answers(self.peer_agent, PROBE_DEADLINE)
            if self.witness:
                calls["witness"] = lambda: tcp_open(self.witness, PROBE_DEADLINE)
        got = run_all(calls, PROBE_DEADLINE)
        if not got["own"].ok:
            self._drop_conn()
        return Round(own=got["own"].value if got["own"].ok else None,
                     peer=got["peer"].value if got["peer"].ok else None,
                     peer_agent=bool(got["peer_agent"].value) if "peer_agent" in got and got["peer_agent"].ok
                     else False,
                     witness=(bool(got["witness"].value) if got["witness"].ok else False) if "witness" in got
                     else None,
                     recorded=got["record"].value if got["record"].ok else None)

    def _read_own(self) -> Reading:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            conn = self._conn = connect(self.own_node, "watch", self.site)
        row = conn.execute(queries.WATCH_OWN_NODE, (self.peer,)).fetchone()
        return Reading(bool(row["in_recovery"]), int(row["timeline"] or 0), row["standby_names"] or "",
                       row["peer_reply_at"], float(row["sync_wait"] or 0.0), row["server_now"])

    def _read_peer(self) -> Reading:
        with connect(self.peer_node, "watch", self.peer) as conn:
            row = conn.execute(queries.WATCH_PEER_NODE).fetchone()
        return Reading(bool(row["in_recovery"]), int(row["timeline"] or 0))

    def _read_record(self) -> Generation | None:
        """The newest record this site holds: the one dcctl wrote where it ran, and the one it wrote
        into this site's state_dir (the agent runs at the site, so both are local files)."""
        return newest(read_local(self.setup.config.state_dir, self.service),
                      read_path(site_path(self.site_state_dir, self.service)))

    def _peer_streams(self, own: Reading) -> bool:
        reply = own.peer_reply_at
        return reply is not None and (self._relaxed_at is None or reply > self._relaxed_at)

    def _hold_transport(self) -> None:
        """An open connection to this site, ready for a fence (an SSH handshake would add to the
        time a superseded primary keeps acknowledging commits)."""
        if self._transport is not None or time.monotonic() < self._transport_retry_at:
            return
        transport = open_transport(self.site, self.setup.config.services[self.service].sites[self.site])
        try:
            transport.connect()
        except DcctlError as exc:
            log.warning("generation watch: cannot hold a connection to site %s for a fence (retry in %g s): %s",
                        self.site, TRANSPORT_RETRY, exc.message)
            self._transport_retry_at = time.monotonic() + TRANSPORT_RETRY
            return
        self._transport = transport

    def _drop_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a broken connection may fail to close; it is dropped either way
                pass

    def _manage_sync(self, r: Round, now: float) -> None:
        own = r.own
        facts = sync_rep.SyncFacts(site=self.site, peer=self.peer, in_recovery=own.in_recovery,
                                   timeline=own.timeline, current=own.standby_names,
                                   peer_streaming=self._peer_streams(own), waited=own.sync_wait,
                                   unseen_for=now - self._peer_streamed, watched_for=now - self._continuous_since)
        decision = sync_rep.decide(self.replication.mode, self.replication.relax_after, facts, r.recorded)
        value = own.standby_names
        if decision.value is not None:
            sync_rep.apply(self._conn, decision.value)
            value = decision.value
            # Only a reply sent after this moment shows the peer streams again: a frozen walreceiver
            # keeps its connection, and its state 'streaming', until wal_sender_timeout.
            self._relaxed_at = own.server_now if decision.value == "" else None
            level = logging.WARNING if decision.value == "" and not own.in_recovery else logging.INFO
            log.log(level, "synchronous_standby_names = %r at %s: %s", decision.value, self.site, decision.why)
        with self._lock:
            managed = self.replication.mode != "async" and not own.in_recovery
            self._standby_required = bool(value) if managed else None

    def _log_peer(self, r: Round) -> None:
        up = r.peer is not None
        if up != self._peer_was_up and self._peer_was_up is not None:
            if up:
                log.info("generation watch: %s's PostgreSQL answers again", self.peer)
            else:
                agent = "its agent answers" if r.peer_agent else "its agent is not asked or does not answer"
                log.warning("generation watch: %s's PostgreSQL does not answer (%s)", self.peer, agent)
        self._peer_was_up = up

    def _describe(self, r: Round) -> str:
        if r.own is None:
            return f"PostgreSQL at {self.site} does not answer"
        role = "standby" if r.own.in_recovery else "primary"
        peer = "unreachable" if r.peer is None else ("standby" if r.peer.in_recovery else "primary")
        return f"{self.site} {role} on timeline {r.own.timeline}, {self.peer} {peer}"

    def _finish(self, r: Round, detail: str) -> None:
        with self._lock:
            self._last_round = time.time()
            self._last_detail = detail


def watch_tasks(setup: AgentSetup) -> list[GenerationWatch]:
    return [GenerationWatch(setup, service) for service in setup.services]
