"""The agent's file-sync task: on the primary site, watch each store and push its changes.

One FileSyncTask per service that has file stores at the agent's site. Its controller thread
decides every `role_check_interval` seconds whether this site pushes (decide.push_decision: it
must be the one primary, not stale, its peer not fenced), starts or stops one StoreSyncer per
store accordingly, and writes status.json about once a second.

A StoreSyncer has two threads: the watcher reads inotify events into `pending`; the pusher runs
a full reconciliation first (agent start, role change), again every `reconcile_interval`, and
whenever events may have been missed; otherwise it pushes what is pending in batches, `batch_window`
seconds after the first event of each batch. A restart therefore never leaves a difference
behind: whatever happened while no agent watched, the first reconciliation finds.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import replace
from typing import Any

from dcctl.agent.collector import Health
from dcctl.agent.metrics import Sample, counts_by_reason, sample
from dcctl.agent.setup import AgentSetup
from dcctl.config.schema import LocalTransportConfig, ServiceConfig, SiteConfig
from dcctl.errors import DcctlError, UnreachableError
from dcctl.filesync import layout
from dcctl.filesync.decide import Direction, push_decision
from dcctl.filesync.engine import FileSyncError, HandedOver, MassDeleteRefused, StorePair, deletion_dirs
from dcctl.filesync.rsync import describe_exit
from dcctl.filesync.state import StoreStatus, SyncStatus
from dcctl.filesync.watch import Pending, Sink, Watcher
from dcctl.transport import open_transport
from dcctl.transport.base import Transport
from dcctl.transport.local import LocalTransport

log = logging.getLogger("dcctl.agent.filesync")
TICK = 0.5  # seconds between two rounds of the controller
STATUS_EVERY = 1.0  # seconds between two writes of status.json
SYNCED_MARGIN = 1.0  # seconds: an event may still sit in the kernel queue when a batch starts
MAX_BACKOFF = 30.0


def site_user(site: SiteConfig) -> str | None:
    """The OS user dcctl acts as at a site: commands the agent runs at its own site run as it too."""
    t = site.transport
    return t.run_as if isinstance(t, LocalTransportConfig) else t.user


def own_transport(name: str, site: SiteConfig) -> LocalTransport:
    return LocalTransport(name, run_as=site_user(site))


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, HandedOver):
        return "handed_over"
    if isinstance(exc, MassDeleteRefused):
        return "mass_delete"
    if isinstance(exc, UnreachableError) or (isinstance(exc, FileSyncError) and "exit 255" in exc.message):
        return "peer_unreachable"
    return "rsync" if isinstance(exc, DcctlError) else "internal"


class StoreSyncer:
    """Keeps one store of the pushing site mirrored on the other site."""

    def __init__(self, pair: StorePair, status: StoreStatus, on_handed_over=lambda: None):
        self.pair = pair
        self._on_handed_over = on_handed_over  # the controller decides the roles again at once
        self.settings = pair.settings
        self.status = status  # shared with the task; fields updated under self._cond
        self._cond = threading.Condition()
        self._pending = Pending()
        self._held: dict[bytes, float] = {}  # deletions the guard refused: path -> first seen
        self._inflight: list[tuple[bytes, float, float]] = []
        self._need_full: str | None = "agent start"
        self._next_reconcile = 0.0  # monotonic
        self._retry_at = 0.0  # monotonic: no attempt before (after a failure)
        self._backoff = 1.0
        self._deleted_since_reconcile = 0
        self._frozen_at: float | None = None  # synced_through while events may have been missed
        self._receipt_written = 0.0  # monotonic
        self._receipt_value: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.watcher = Watcher(pair.source_dir, Sink(self._on_paths, self._on_missed, self._on_problem), pair.store)
        self.batches = 0

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._started = time.time()
        try:
            self.watcher.start()
            self.status.watched_dirs = self.watcher.watched_dirs
        except OSError as exc:  # no inotify at all: reconciliations alone keep the store in sync
            self._on_problem(f"cannot watch {self.pair.source_dir}: {exc.strerror or exc}")
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"dcctl-push-{self.pair.store}")
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self.watcher.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        self.pair.close()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def request_full(self, reason: str) -> None:
        self._on_missed(reason, freeze=False)

    # ---- what the watcher reports (its thread) --------------------------------------------------

    def _on_paths(self, paths: list[bytes]) -> None:
        if not paths:
            return
        now = time.time()
        with self._cond:
            for path in paths:
                self._pending.add(path, now)
            if len(self._pending) > self.settings.max_pending:
                self._pending.clear()
                self._on_missed(f"more than {self.settings.max_pending} paths waiting (filesync.max_pending)")
            self._cond.notify_all()

    def _on_missed(self, reason: str, freeze: bool = True) -> None:
        with self._cond:
            if freeze and self._frozen_at is None:
                self._frozen_at = self._synced_through_locked(time.time())
            if self._need_full is None:
                self._need_full = reason
            if freeze:
                self.status.errors_total["missed_events"] = self.status.errors_total.get("missed_events", 0) + 1
                log.warning("store %s: %s: a full reconciliation follows", self.pair.store, reason)
            self._cond.notify_all()

    def _on_problem(self, problem: str | None) -> None:
        with self._cond:
            self.status.watch_problem = problem
            if problem:
                kind = "watch_limit" if "limit" in problem or "inotify instances" in problem else "watch"
                self.status.errors_total[kind] = self.status.errors_total.get(kind, 0) + 1
        if problem:
            log.error("store %s: %s", self.pair.store, problem)

    # ---- the pusher ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            work = self._next_work()
            if work is not None:
                kind, reason = work
                if kind == "reconcile":
                    self._reconcile(reason)
                else:
                    self._batch()

    def _next_work(self) -> tuple[str, str] | None:
        """Wait for something to do; ('reconcile', reason), ('batch', ''), or None to look again."""
        with self._cond:
            now = time.monotonic()
            if now < self._retry_at:
                self._cond.wait(min(1.0, self._retry_at - now))
                return None
            reason = self._need_full
            if reason is None and now >= self._next_reconcile:
                reason = "interval"
            if reason is not None:
                return "reconcile", reason
            if not len(self._pending):
                self._cond.wait(min(1.0, max(0.01, self._next_reconcile - now)))
                return None
            wait = self._pending.oldest() + self.settings.batch_window - time.time()
            if wait > 0 and len(self._pending) < self.settings.max_batch_files:
                self._cond.wait(wait)
                return None
            return "batch", ""

    def _fail(self, what: str, exc: BaseException) -> None:
        kind = error_kind(exc)
        message = exc.message if isinstance(exc, DcctlError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, HandedOver):
            # What waits here is the other site's to push now; should this site push again one day
            # (the operation rolled back), a full reconciliation comes first.
            with self._cond:
                self._pending.clear()
                self._need_full = self._need_full or "pushing handed back"
            self._on_handed_over()
        with self._cond:
            self.status.errors_total[kind] = self.status.errors_total.get(kind, 0) + 1
            repeated = self.status.last_error == message
            self.status.last_error, self.status.last_error_at = message, time.time()
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(MAX_BACKOFF, self._backoff * 2)
        if repeated:
            return
        if isinstance(exc, HandedOver):
            log.warning("store %s: %s not run: %s", self.pair.store, what, message)
        else:
            log.error("store %s: %s failed: %s", self.pair.store, what, message,
                      exc_info=not isinstance(exc, DcctlError))

    def _succeeded(self) -> None:
        self._backoff = 1.0
        if self.status.last_error:
            log.warning("store %s: syncing again", self.pair.store)
        self.status.last_error = None

    def _reconcile(self, reason: str) -> None:
        pair = self.pair
        started = time.time()
        with self._cond:
            self._need_full = None
        try:
            preview = pair.preview()
            if not preview.verdict.allowed:
                raise MassDeleteRefused(pair.store, preview.verdict)
            result = pair.reconcile(preview)
        except MassDeleteRefused as exc:
            with self._cond:
                self.status.blocked = exc.verdict.reason
                self.status.errors_total["mass_delete"] = self.status.errors_total.get("mass_delete", 0) + 1
                self._next_reconcile = time.monotonic() + self.settings.reconcile_interval
                if self._frozen_at is None:
                    self._frozen_at = self._synced_through_locked(started)
            log.error("store %s: reconciliation (%s) refused: %s", pair.store, reason, exc.message)
            return
        except Exception as exc:  # noqa: BLE001 - any failure is retried; the agent must go on
            with self._cond:
                self._need_full = self._need_full or reason
            self._fail(f"reconciliation ({reason})", exc)
            return
        stats = result.stats
        with self._cond:
            self._pending.drop_seen_before(started)
            self._held.clear()
            self._deleted_since_reconcile = 0
            self._frozen_at = None if self.status.watch_problem is None else started
            s = self.status
            s.blocked = None
            s.receiver_entries = stats.entries
            s.last_reconcile_started_at, s.last_reconcile_finished_at = result.started_at, result.finished_at
            s.last_reconcile_seconds, s.last_reconcile_reason = round(result.seconds, 3), reason
            s.files_total += stats.files_transferred
            s.bytes_total += stats.bytes_transferred
            s.reconciles_total[reason] = s.reconciles_total.get(reason, 0) + 1
            self._next_reconcile = time.monotonic() + self.settings.reconcile_interval
            self._succeeded()
        log.info("store %s: full reconciliation (%s) in %.2f s: %d file(s), %d byte(s) sent, %d deleted (kept in "
                 "the holding area)%s", pair.store, reason, result.seconds, stats.files_transferred,
                 stats.bytes_transferred, stats.deleted, "; " + describe_exit(result.rc) if result.rc else "")
        try:
            pair.prune_holding()
        except DcctlError as exc:
            log.warning("store %s: pruning the holding area failed: %s", pair.store, exc.message)
        self._receipt_written = 0.0  # the controller writes the receipt at its next round

    def _batch(self) -> None:
        pair = self.pair
        root = pair.source_dir.encode("utf-8", "surrogateescape").rstrip(b"/")
        with self._cond:
            items = self._pending.take(self.settings.max_batch_files)
            self._inflight = items
            blocked = self.status.blocked is not None
            already = self._deleted_since_reconcile
            entries = self.status.receiver_entries or 0
        present, missing = [], []
        for path, _first, _last in items:
            try:
                os.lstat(root + b"/" + path)
                present.append(path)
            except (FileNotFoundError, NotADirectoryError):
                missing.append(path)
        def exists(path: bytes) -> bool:
            return os.path.lexists(root + b"/" + path)

        try:
            outcome = pair.batch(present, deletion_dirs(missing, exists) if missing else [],
                                 deletions_allowed=not blocked, receiver_entries=entries, already_deleted=already)
        except Exception as exc:  # noqa: BLE001
            with self._cond:
                self._pending.put_back(items)
                self._inflight = []
            self._fail("batch", exc)
            return
        firsts = {path: first for path, first, _ in items}
        with self._cond:
            self._inflight = []
            s = self.status
            if outcome.refused is not None or (blocked and missing):
                for path in missing:
                    self._held.setdefault(path, firsts[path])
                if outcome.refused is not None and s.blocked is None:
                    s.blocked = outcome.refused.reason
                    s.errors_total["mass_delete"] = s.errors_total.get("mass_delete", 0) + 1
                    log.error("store %s: batch deletions refused: %s", pair.store, outcome.refused.reason)
            if outcome.result is not None:
                stats = outcome.result.stats
                s.files_total += stats.files_transferred
                s.bytes_total += stats.bytes_transferred
                self._deleted_since_reconcile += outcome.deleted
                if s.receiver_entries is not None:
                    s.receiver_entries = max(0, s.receiver_entries + stats.created - outcome.deleted)
            s.last_batch_at = time.time()
            self.batches += 1
            self._succeeded()

    # ---- what has reached the other site ---------------------------------------------------------

    def _oldest_locked(self) -> float | None:
        times = [t for t in (self._pending.oldest(), min(self._held.values(), default=None),
                             min((first for _, first, _ in self._inflight), default=None)) if t is not None]
        return min(times) if times else None

    def _synced_through_locked(self, now: float) -> float | None:
        """Every change made at the source before this time is on the receiver (None: unknown yet)."""
        if self._frozen_at is not None or self.status.last_reconcile_started_at is None:
            return self._frozen_at
        if self.status.watch_problem is not None:
            return self.status.last_reconcile_started_at
        oldest = self._oldest_locked()
        candidate = now - SYNCED_MARGIN
        return min(candidate, oldest) if oldest is not None else candidate

    def snapshot(self, now: float) -> StoreStatus:
        with self._cond:
            oldest = self._oldest_locked()
            synced = self._synced_through_locked(now)
            behind = synced if synced is not None else getattr(self, "_started", None)
            if self._need_full is not None and behind is not None:
                oldest = min(oldest, behind) if oldest is not None else behind
            return replace(self.status, pending=len(self._pending) + len(self._held) + len(self._inflight),
                           oldest_pending_at=oldest, synced_through=synced, watched_dirs=self.watcher.watched_dirs,
                           errors_total=dict(self.status.errors_total),
                           reconciles_total=dict(self.status.reconciles_total))

    def maybe_write_receipt(self) -> None:
        """Called by the task's controller thread, so that a slow peer never delays a batch."""
        now = time.monotonic()
        if now - self._receipt_written < self.settings.receipt_interval:
            return
        with self._cond:
            synced = self._synced_through_locked(time.time())
            last = self.status.last_reconcile_started_at
        if synced is None or synced == self._receipt_value:
            return
        try:
            self.pair.write_receipt(synced, last)
            self._receipt_value, self._receipt_written = synced, now
        except Exception as exc:  # noqa: BLE001 - the receipt is retried; pushing goes on regardless
            self._receipt_written = now
            with self._cond:
                self.status.errors_total["receipt"] = self.status.errors_total.get("receipt", 0) + 1
            log.warning("store %s: cannot record the receipt at %s: %s", self.pair.store, self.pair.target_site,
                        getattr(exc, "message", exc))


class FileSyncTask:
    """The agent's task for one service: decides the direction, runs one StoreSyncer per store."""

    def __init__(self, setup: AgentSetup, service: str):
        self.setup = setup
        self.service = service
        self.config: ServiceConfig = setup.config.services[service]
        self.site = setup.site
        self.peer = next(name for name in self.config.sites if name != self.site)
        self.site_cfg = self.config.sites[self.site]
        self.name = f"filesync {service}"
        self.settings = self.config.filesync
        self.own = own_transport(self.site, self.site_cfg)
        self.direction = Direction(False, "not decided yet")
        self.started_at = time.time()
        self.stores = {name: StoreStatus(name, path, "") for name, path in sorted(self.site_cfg.file_stores.items())}
        self.syncers: dict[str, StoreSyncer] = {}
        self._peer_transport: Transport | None = None
        self._run_marks: dict[str, int] = {}  # path -> mtime (ns) of each mark watched
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._crashed: str | None = None
        self._next_role_check = 0.0
        self._status_written = 0.0

    # ---- Task protocol ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"dcctl-filesync-{self.service}")
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._deactivate(timeout)
        self._write_status(force=True)

    def run_once(self) -> bool:
        """One role check and, on the pushing site, one full reconciliation of each store."""
        self._decide()
        ok = True
        if self.direction.active:
            for name in self.stores:
                pair = self._pair(name, tag="agent")
                syncer = StoreSyncer(pair, self.stores[name])
                syncer._reconcile("agent --once")
                ok = ok and syncer.status.last_error is None and syncer.status.blocked is None
                pair.close()
        self._write_status(force=True)
        return ok

    def samples(self, now: float) -> list[Sample]:
        return status_samples(self.snapshot(now), now)

    def health(self, now: float) -> Health:
        if self._crashed:
            return Health(False, f"{self.name}: stopped after an internal error: {self._crashed}")
        dead = [name for name, syncer in self.syncers.items() if not syncer.alive()]
        if dead:
            return Health(False, f"{self.name}: the pusher of store(s) {', '.join(dead)} stopped")
        return Health(True, f"{self.name}: {self.direction.reason}")

    # ---- the controller ------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                if time.monotonic() >= self._next_role_check:
                    self._next_role_check = time.monotonic() + self.settings.role_check_interval
                    self._decide()
                    self._apply()
                self._watch_operator_runs()
                for syncer in list(self.syncers.values()):
                    syncer.maybe_write_receipt()
                self._write_status()
                self._stop.wait(TICK)
        except Exception as exc:  # noqa: BLE001 - reported by health(), logged with its traceback
            self._crashed = f"{type(exc).__name__}: {exc}"
            log.exception("file sync of %s stopped", self.service)

    def _decide(self) -> None:
        from dcctl.model import Generation
        from dcctl.ops.generation import site_path
        from dcctl.parallel import run_all
        from dcctl.pg.probe import probe_node

        calls = {name: (lambda cfg=cfg, name=name: probe_node(cfg.postgres, name, "filesync"))
                 for name, cfg in self.config.sites.items()}
        outcomes = run_all(calls, deadline=self.setup.config.site_timeout)
        own, peer = outcomes[self.site], outcomes[self.peer]
        own_error = None if own.ok else ("no answer in time" if own.timed_out else
                                         getattr(own.error, "message", str(own.error)))
        recorded = None
        try:
            recorded = Generation(**json.loads(self.own.read_file(site_path(self.site_cfg.state_dir, self.service))))
        except (DcctlError, ValueError, TypeError):
            pass
        decision = push_decision(self.site, self.peer, own.value if own.ok else None, own_error,
                                 peer.value if peer.ok else None, recorded)
        if decision.reason != self.direction.reason:
            log.info("%s: %s", self.service, decision.reason)
        self.direction = decision

    def _decide_soon(self) -> None:
        self._next_role_check = 0.0

    def _apply(self) -> None:
        if self.direction.active and self.syncers and any(
                syncer.pair.pushing_timeline != (self.direction.timeline or 0) for syncer in self.syncers.values()):
            self._deactivate(5.0)  # primary again on a new timeline, between two role checks: start afresh
        if self.direction.active and not self.syncers:
            self._activate()
        elif not self.direction.active and self.syncers:
            self._deactivate(5.0)

    def _peer(self) -> Transport:
        if self._peer_transport is None:
            peer_cfg = self.config.sites[self.peer]
            self._peer_transport = own_transport(self.peer, peer_cfg) if isinstance(
                peer_cfg.transport, LocalTransportConfig) else open_transport(self.peer, peer_cfg)
        return self._peer_transport

    def _pair(self, store: str, tag: str) -> StorePair:
        return StorePair(self.service, store, self.site, self.peer, self.site_cfg, self.config.sites[self.peer],
                         self.settings, self.own, self._peer(), tag, pushing_timeline=self.direction.timeline or 0)

    def _activate(self) -> None:
        for name in self.stores:
            if name not in self.config.sites[self.peer].file_stores:
                log.error("%s: store %s has no directory at %s; not synced", self.service, name, self.peer)
                continue
            pair = self._pair(name, tag="agent")
            self.stores[name].target = f"{self.peer}:{pair.target_dir}"
            syncer = StoreSyncer(pair, self.stores[name], on_handed_over=self._decide_soon)
            syncer.start()
            with self._lock:
                self.syncers[name] = syncer
            log.info("%s: store %s: watching %s (%d directories), pushing to %s", self.service, name,
                     pair.source_dir, syncer.watcher.watched_dirs, self.stores[name].target)

    def _deactivate(self, timeout: float) -> None:
        with self._lock:
            syncers, self.syncers = self.syncers, {}
        for name, syncer in syncers.items():
            syncer.stop(timeout)  # first: a reconciliation ending now is in the status kept
            self.stores[name] = syncer.snapshot(time.time())
        if syncers:
            log.info("%s: stopped pushing (%s)", self.service, self.direction.reason)
        if self._peer_transport is not None:
            self._peer_transport.close()
            self._peer_transport = None

    def _watch_operator_runs(self) -> None:
        """Operations leave marks at this site; the agent looks at them every tick.

        - The generation record (an operation's last step) and the hand-over mark (a switchover's
          final file sync): the roles changed; they are decided again now, not at the next role check.
        - An operator's `dcctl filesync run` (e.g. --allow-mass-delete), or a switchover's final file
          sync: the agent reconciles again. Right after a switchover's, this site may no longer be
          the primary, so the roles are decided first: a full reconciliation from a site that has
          just become the standby would delete, at the new primary, the files written there since."""
        from dcctl.ops.generation import site_path

        state_dir = self.site_cfg.state_dir
        roles_changed = any([self._mark_changed(path) for path in (
            site_path(state_dir, self.service), layout.handover_path(state_dir, self.service))])
        changed = [name for name in self.stores if self._mark_changed(layout.run_path(state_dir, self.service, name))]
        if not changed and not roles_changed:
            return
        self._next_role_check = time.monotonic() + self.settings.role_check_interval
        self._decide()
        self._apply()
        for name in changed:
            syncer = self.syncers.get(name)
            if syncer is not None:
                syncer.request_full("operator run")

    def _mark_changed(self, path: str) -> bool:
        try:
            mark = os.stat(path).st_mtime_ns
        except OSError:
            mark = 0
        previous = self._run_marks.setdefault(path, mark)
        self._run_marks[path] = mark
        return mark != previous

    # ---- status ----------------------------------------------------------------------------------

    def snapshot(self, now: float) -> SyncStatus:
        with self._lock:
            stores = {name: (self.syncers[name].snapshot(now) if name in self.syncers else self.stores[name])
                      for name in self.stores}
        return SyncStatus(self.service, self.site, self.peer, self.direction.active, self.direction.reason, now,
                          os.getpid(), self.started_at, stores)

    def _write_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._status_written < STATUS_EVERY:
            return
        self._status_written = now
        status = self.snapshot(time.time())
        directory = layout.service_dir(self.site_cfg.state_dir, self.service)
        try:
            if not os.path.isdir(directory):
                self.own.run(["mkdir", "-p", directory], timeout=30).check(f"creating {directory}")
            self.own.write_file(layout.status_path(self.site_cfg.state_dir, self.service),
                                status.to_json().encode(), mode=0o644)
        except (DcctlError, OSError) as exc:
            log.warning("%s: cannot write the file-sync status: %s", self.service, getattr(exc, "message", exc))


def status_samples(status: SyncStatus, now: float) -> list[Sample]:
    """A status -> the agent's dcctl_filesync_* samples (pure)."""
    out = []
    for name, s in status.stores.items():
        labels = {"service": status.service, "site": status.site, "store": name}
        out.append(sample("dcctl_filesync_active", status.active, **labels))
        out.append(sample("dcctl_filesync_files_transferred_total", s.files_total, **labels))
        out.append(sample("dcctl_filesync_bytes_transferred_total", s.bytes_total, **labels))
        for kind, count in sorted(s.errors_total.items()):
            out.append(sample("dcctl_filesync_errors_total", count, **labels, kind=kind))
        for reason, count in sorted(counts_by_reason(s.reconciles_total).items()):
            out.append(sample("dcctl_filesync_reconciliations_total", count, **labels, reason=reason))
        if not status.active:
            continue
        out.append(sample("dcctl_filesync_lag_seconds", s.lag(now), **labels))
        out.append(sample("dcctl_filesync_pending_files", s.pending, **labels))
        out.append(sample("dcctl_filesync_blocked", s.blocked is not None, **labels))
        out.append(sample("dcctl_filesync_watched_directories", s.watched_dirs, **labels))
        if s.last_batch_at is not None:
            out.append(sample("dcctl_filesync_last_batch_timestamp_seconds", s.last_batch_at, **labels))
        if s.last_reconcile_finished_at is not None:
            out.append(sample("dcctl_filesync_last_reconcile_timestamp_seconds", s.last_reconcile_finished_at,
                              **labels))
        if s.synced_through is not None:
            out.append(sample("dcctl_filesync_synced_through_timestamp_seconds", s.synced_through, **labels))
    return out


def filesync_tasks(setup: AgentSetup) -> list[Any]:
    """FACTORIES entry: one task per service with file stores at this site."""
    return [FileSyncTask(setup, service) for service in setup.services
            if setup.config.services[service].sites[setup.site].file_stores]
