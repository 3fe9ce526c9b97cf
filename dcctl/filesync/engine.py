"""Executes file sync for one store between two sites: previews, full reconciliations, batches,
the switchover's scoped sync and verify, the rejoin's quarantine. The agent, the CLI and the
operations all use it; they differ only in the transports they hand it.

rsync always runs at the SOURCE site (through `source`, a transport to that site) and pushes to
the receiving site: between directories when both sites are local, else with `-e ssh` to the
receiving site's SSH transport config (its host, user, key and known_hosts), one master
connection per (site, purpose) kept open across runs. `target` is a transport to the receiving
site, for receipts, listings and the holding area.

Each rsync holds the store's lock at the source (flock), so the agent and an operator never run
two at once. Planning is separate from executing: a preview (dry run) decides, then the run acts.
"""
from __future__ import annotations

import logging
import os
import posixpath
import shlex
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from dcctl.config.schema import FileSyncConfig, LocalTransportConfig, SiteConfig, SshTransportConfig
from dcctl.errors import ConfigError, DcctlError, ExitCode, RefusedError
from dcctl.filesync import holding, layout, manifest
from dcctl.filesync.decide import DeleteVerdict, guard
from dcctl.filesync.rsync import (HANDED_OVER_RC, LOCK_BUSY_RC, MAX_DELETE_RC, OK_CODES, Job, SshTarget, Stats, Target, describe_exit,
                                  error_tail, files_from, locked, parse_created_dirs, parse_deletions, parse_progress,
                                  parse_stats, rsync_argv, ssh_exit_argv, unless_handed_over)
from dcctl.filesync.state import Receipt, RunRecord, SyncStatus
from dcctl.transport.base import Transport

log = logging.getLogger("dcctl.agent.filesync")
LOCK_WAIT = 600.0  # seconds an rsync waits for the store's lock (another sync of the store)
CTIME_MARGIN = 2.0  # seconds subtracted from "since" times: coarse file-system timestamps, clock steps


class FileSyncError(DcctlError):
    """rsync or a listing failed; the message names the store, the sites and rsync's own words."""

    exit_code = ExitCode.FAILED


class MassDeleteRefused(RefusedError):
    """The mass-deletion guard refused a run; nothing was deleted."""

    def __init__(self, store: str, verdict: DeleteVerdict):
        self.verdict = verdict
        super().__init__(f"store {store}: {verdict.reason}",
                         hint="check the source store (mounted? wiped?); if the deletions are wanted: "
                              "dcctl filesync run --allow-mass-delete")


class HandedOver(FileSyncError):
    """A switchover (or failover) stopped the pushing from this site; nothing was sent."""


Progress = Callable[[int, int, int], None]  # bytes so far, entries checked, entries known


@dataclass(frozen=True)
class Preview:
    """What a full reconciliation would do (a dry run), and the guard's verdict on it."""

    store: str
    receiver_empty: bool
    stats: Stats
    deletions: tuple[str, ...]  # up to 1,000 of them, as the receiving store names them
    verdict: DeleteVerdict

    @property
    def receiver_entries(self) -> int:
        return 0 if self.receiver_empty else self.stats.receiver_entries


@dataclass(frozen=True)
class RunResult:
    started_at: float
    finished_at: float
    stats: Stats
    rc: int
    created_dirs: tuple[str, ...] = ()

    @property
    def seconds(self) -> float:
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class BatchResult:
    result: RunResult | None  # None when nothing ran
    deleted: int
    refused: DeleteVerdict | None  # the guard refused the batch's deletions (they stay pending)


@dataclass
class StorePair:
    """One store, pushed from `source_site` to `target_site`."""

    service: str
    store: str
    source_site: str
    target_site: str
    source_cfg: SiteConfig
    target_cfg: SiteConfig
    settings: FileSyncConfig
    source: Transport
    target: Transport
    tag: str  # names the SSH master connection: "agent", "cli-<pid>"
    # The agent's pushes: the source's timeline when it was found to be the primary. Each rsync
    # then runs only if no operation has handed the pushing over since (layout.handover_path).
    pushing_timeline: int | None = None
    _dirs_ready: bool = field(default=False, repr=False)
    _ssh_used: bool = field(default=False, repr=False)
    _made: set = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if self.store not in self.source_cfg.file_stores or self.store not in self.target_cfg.file_stores:
            raise ConfigError([f"store {self.store!r} must be configured at both sites {self.source_site} and "
                               f"{self.target_site} (file_stores)"])
        if isinstance(self.target_cfg.transport, LocalTransportConfig) and \
                not isinstance(self.source_cfg.transport, LocalTransportConfig):
            raise ConfigError([f"file sync from {self.source_site} (ssh) to {self.target_site} (local) is not "
                               f"possible: a local site is this machine, which rsync at {self.source_site} cannot "
                               f"name"], hint="give the receiving site an ssh transport")

    # ---- where things are ----------------------------------------------------------------------

    @property
    def source_dir(self) -> str:
        return self.source_cfg.file_stores[self.store]

    @property
    def target_dir(self) -> str:
        return self.target_cfg.file_stores[self.store]

    @property
    def lock_file(self) -> str:
        return layout.lock_path(self.source_cfg.state_dir, self.service, self.store)

    @property
    def handover_mark(self) -> str:
        return layout.handover_path(self.source_cfg.state_dir, self.service)

    def ssh_target(self) -> SshTarget | None:
        t = self.target_cfg.transport
        if not isinstance(t, SshTransportConfig):
            return None
        return SshTarget(host=t.host, port=t.port, user=t.user, known_hosts=t.known_hosts, key_file=t.key_file,
                         connect_timeout=t.connect_timeout, keepalive_interval=t.keepalive_interval,
                         control_path=layout.control_path(self.source_cfg.state_dir, self.service,
                                                          self.target_site, self.tag),
                         control_persist=self.settings.ssh_control_persist)

    def rsync_target(self) -> Target:
        return Target(self.target_dir, self.ssh_target(), self.settings.rsync_path)

    def describe(self) -> str:
        return f"{self.source_site}:{self.source_dir} -> {self.target_site}:{self.target_dir}"

    @property
    def keeps_owners(self) -> bool:
        """The store's `owners` setting: keep (rsync -o -g, verify compares them) or ignore."""
        return self.settings.keeps_owners(self.store)

    def compare(self, source: manifest.Manifest, target: manifest.Manifest) -> list[manifest.Difference]:
        return manifest.compare(source, target, self.source_site, self.target_site, owners=self.keeps_owners)

    def _job(self, mode, now: datetime | None = None, **options) -> Job:
        now = now or datetime.now(timezone.utc)
        return Job(mode, self.source_dir, self.rsync_target(),
                   layout.holding_dir(self.target_cfg.state_dir, self.service, self.store, now),
                   layout.holding_suffix(now), io_timeout=self.settings.io_timeout,
                   keep_owners=self.keeps_owners, **options)

    # ---- preparation ---------------------------------------------------------------------------

    def ensure_dirs(self) -> None:
        """The sync directories at both sites, and both stores present (never created: a missing
        store is an unmounted volume or a typo, and filling the parent would hide it)."""
        if self._dirs_ready:
            return
        for transport, directory, role in ((self.source, self.source_dir, "source"),
                                           (self.target, self.target_dir, "receiving")):
            if transport.run(["test", "-d", directory], timeout=30).rc != 0:
                raise FileSyncError(f"store {self.store}: directory {directory} does not exist at the {role} site "
                                    f"{transport.site}", hint="create it (or mount its volume) first")
        self.source.run(["mkdir", "-p", layout.service_dir(self.source_cfg.state_dir, self.service)],
                        timeout=30).check(f"creating the file-sync state directory at site {self.source_site}")
        self.target.run(["mkdir", "-p", layout.holding_root(self.target_cfg.state_dir, self.service, self.store)],
                        timeout=30).check(f"creating the holding area at site {self.target_site}")
        self._dirs_ready = True

    def receiver_empty(self) -> bool:
        result = self.target.run(["find", self.target_dir, "-mindepth", "1", "-maxdepth", "1", "-print", "-quit"],
                                 timeout=60)
        if result.rc != 0:
            raise FileSyncError(f"cannot list {self.target_dir} at site {self.target_site}: "
                                f"{error_tail(result.stderr)}")
        return result.stdout == ""

    # ---- running rsync -------------------------------------------------------------------------

    def _rsync(self, job: Job, *, paths: list[bytes] | None = None, timeout: float,
               progress: Progress | None = None) -> tuple[int, str]:
        """Run one rsync at the source site under the store's lock; (rc, its output)."""
        # flock(1) holds the lock until rsync exits, even if dcctl dies first (kill -9 of the agent).
        argv = rsync_argv(job)
        if self.pushing_timeline is not None:
            argv = unless_handed_over(argv, self.handover_mark, self.pushing_timeline)
        argv = locked(argv, self.lock_file, LOCK_WAIT)
        if job.target.ssh is not None:
            self._ssh_used = True
        if progress is not None:
            return self._rsync_with_progress(argv, timeout, progress)
        result = self.source.run(argv, input=files_from(paths) if paths is not None else None,
                                 timeout=timeout, env={"LC_ALL": "C"})
        return self._outcome(result.rc, result.stdout, result.stderr)

    def _rsync_with_progress(self, argv: list[str], timeout: float, progress: Progress) -> tuple[int, str]:
        """progress2 writes one line per file: streamed through a pipe into Python, that costs the
        run about a tenth of its time on two cores. So rsync writes it to a file at the source site,
        whose last line is read twice a second."""
        output = posixpath.join(layout.service_dir(self.source_cfg.state_dir, self.service),
                                f"{self.store}.progress")
        done = threading.Event()

        def poll() -> None:
            while not done.wait(0.5):
                try:
                    tail = self.source.run(["tail", "-c", "400", output], timeout=10).stdout
                except DcctlError:
                    continue
                parsed = parse_progress(tail)
                if parsed:
                    progress(*parsed)

        poller = threading.Thread(target=poll, daemon=True, name=f"dcctl-progress-{self.store}")
        poller.start()
        try:
            result = self.source.run(["sh", "-c", 'out=$1; shift; exec "$@" >"$out" 2>&1', "sh", output, *argv],
                                     timeout=timeout, env={"LC_ALL": "C"})
        finally:
            done.set()
            poller.join(5)
        # the stats block and any error are at the end; the file may hold a line per file
        text = self.source.run(["tail", "-c", "65536", output], timeout=60).stdout
        parsed = parse_progress(text)
        if parsed:
            progress(*parsed)
        self.source.run(["rm", "-f", output], timeout=30)
        lines = [line for line in text.replace("\r", "\n").splitlines() if not parse_progress(line)]
        return self._outcome(result.rc, "\n".join(lines), "\n".join(lines) + result.stderr)

    def _outcome(self, rc: int, stdout: str, stderr: str) -> tuple[int, str]:
        if rc == HANDED_OVER_RC:
            try:
                mark = self.source.read_file(self.handover_mark).decode(errors="replace").split()
            except DcctlError:
                mark = []
            raise HandedOver(f"store {self.store}: pushing from {self.source_site} was handed over to "
                             f"{self.target_site} by {mark[1] if len(mark) > 1 else 'an operation'} (timeline "
                             f"{mark[0] if mark else '?'}): nothing sent",
                             hint=f"if {self.source_site} is the primary again because that operation was "
                                  f"interrupted, `dcctl resume` finishes or rolls it back")
        if rc == LOCK_BUSY_RC:
            raise FileSyncError(f"store {self.store}: another sync held its lock {self.lock_file} at site "
                                f"{self.source_site} for {LOCK_WAIT:g} s")
        if rc not in OK_CODES and rc != MAX_DELETE_RC:
            raise FileSyncError(f"store {self.store} ({self.describe()}): {describe_exit(rc)}: "
                                f"{error_tail(stderr) or 'no error output'}", detail=stderr)
        if rc == 24:
            log.debug("store %s: some files vanished during the run (normal on a live store)", self.store)
        return rc, stdout

    # ---- full reconciliation ------------------------------------------------------------------

    def preview(self, *, allow_mass_delete: bool = False) -> Preview:
        """A dry run of a full reconciliation (skipped when the receiving store is empty: nothing
        there can be deleted)."""
        self.ensure_dirs()
        s = self.settings
        if self.receiver_empty():
            verdict = guard(0, 0, s.mass_delete_share, s.mass_delete_floor)
            return Preview(self.store, True, Stats(), (), verdict)
        _, output = self._rsync(self._job("reconcile", dry_run=True, list_deletions=True),
                                timeout=s.reconcile_timeout)
        stats = parse_stats(output)
        deletions = parse_deletions(output)
        verdict = guard(stats.deleted, stats.receiver_entries, s.mass_delete_share, s.mass_delete_floor,
                        allow=allow_mass_delete)
        return Preview(self.store, False, stats, tuple(deletions[:1000]), verdict)

    def reconcile(self, preview: Preview, *, allow_mass_delete: bool = False,
                  progress: Progress | None = None) -> RunResult:
        """The full reconciliation `preview` planned. Raises MassDeleteRefused if its guard refused.

        --max-delete repeats the guard inside rsync, for deletions that appeared since the preview.
        """
        if not preview.verdict.allowed:
            raise MassDeleteRefused(self.store, preview.verdict)
        s = self.settings
        started = time.time()
        max_delete = None if allow_mass_delete else (0 if preview.receiver_empty else preview.verdict.limit)
        rc, output = self._rsync(self._job("reconcile", max_delete=max_delete, progress=progress is not None),
                                 timeout=s.reconcile_timeout, progress=progress)
        stats = parse_stats(output)
        if rc == MAX_DELETE_RC:
            raise MassDeleteRefused(self.store, DeleteVerdict(False, stats.deleted, preview.verdict.limit,
                                                              f"more deletions appeared after the preview than the "
                                                              f"limit of {preview.verdict.limit}: deletions "
                                                              f"stopped at that limit (the rest were kept)"))
        return RunResult(started, time.time(), stats, rc)

    # ---- batches (the agent's events) ------------------------------------------------------------

    def batch(self, present: list[bytes], deleted_in: list[bytes], *, deletions_allowed: bool,
              receiver_entries: int, already_deleted: int) -> BatchResult:
        """Push `present` (content compared, -c); then apply deletions by syncing the immediate
        entries of each directory in `deleted_in` (what is gone there is moved to the holding area),
        unless the guard refuses them: then nothing is deleted and the refusal is returned."""
        s = self.settings
        started = time.time()
        total = Stats()
        rc = 0
        if present:
            rc, output = self._rsync(self._job("batch"), paths=present, timeout=s.reconcile_timeout)
            total = parse_stats(output)
        refused, deleted = None, 0
        if deleted_in and deletions_allowed:
            paths = [_contents(d) for d in deleted_in]
            _, output = self._rsync(self._job("scoped", dry_run=True, list_deletions=True), paths=paths,
                                    timeout=s.reconcile_timeout)
            planned = parse_stats(output).deleted
            verdict = guard(planned, receiver_entries, s.mass_delete_share, s.mass_delete_floor, already=already_deleted)
            if not verdict.allowed:
                refused = verdict
            elif planned:
                rc2, output = self._rsync(self._job("scoped", max_delete=max(0, verdict.limit - already_deleted)),
                                          paths=paths, timeout=s.reconcile_timeout)
                stats = parse_stats(output)
                deleted, rc = stats.deleted, max(rc, rc2)
                total = Stats(total.entries, total.created + stats.created, deleted,
                              total.files_transferred + stats.files_transferred,
                              total.bytes_transferred + stats.bytes_transferred, total.total_size)
        elif deleted_in:
            refused = None  # held back by the caller (the store is blocked)
        if not present and not deleted:
            return BatchResult(None, 0, refused)
        return BatchResult(RunResult(started, time.time(), total, rc), deleted, refused)

    # ---- receipts, records --------------------------------------------------------------------

    def _state_dir_at(self, transport: Transport, state_dir: str) -> None:
        directory = layout.service_dir(state_dir, self.service)
        if (transport.site, directory) not in self._made:
            transport.run(["mkdir", "-p", directory], timeout=30).check(f"creating {directory} at site "
                                                                         f"{transport.site}")
            self._made.add((transport.site, directory))

    def write_receipt(self, synced_through: float | None, last_reconcile_at: float | None) -> None:
        self._state_dir_at(self.target, self.target_cfg.state_dir)
        path = layout.receipt_path(self.target_cfg.state_dir, self.service, self.store)
        previous = read_receipt(self.target, self.target_cfg.state_dir, self.service, self.store)
        if previous is not None and last_reconcile_at is None:
            last_reconcile_at = previous.last_reconcile_at
        receipt = Receipt(self.service, self.store, self.source_site, time.time(), synced_through, last_reconcile_at)
        self.target.write_file(path, receipt.to_json().encode(), mode=0o644)

    def write_run(self, started_at: float, outcome: str, detail: str, by: str) -> RunRecord:
        self._state_dir_at(self.source, self.source_cfg.state_dir)
        previous = read_run(self.source, self.source_cfg.state_dir, self.service, self.store)
        last_ok = started_at if outcome == "ok" else (previous.last_ok_started_at if previous else None)
        record = RunRecord(self.service, self.store, self.source_site, started_at, time.time(), outcome, detail, by,
                           last_ok)
        self.source.write_file(layout.run_path(self.source_cfg.state_dir, self.service, self.store),
                               record.to_json().encode(), mode=0o644)
        return record

    def hand_over(self, timeline: int, by: str, wait: float) -> None:
        """Stop the source's agent from pushing while the source stays on `timeline`: write the mark,
        then take the store's lock once, so that an agent rsync already running has ended (one
        command at the source). Until the other site is primary, nothing is pushed either way."""
        directory = layout.service_dir(self.source_cfg.state_dir, self.service)
        mark = self.handover_mark
        script = ('{ [ -d "$1" ] || mkdir -p "$1"; } && printf "%s %s\\n" "$3" "$4" > "$2.tmp" && mv -f "$2.tmp" "$2" && '
                  'exec flock -E 75 -w "$5" "$6" true')
        result = self.source.run(["sh", "-c", script, "dcctl-hand-over", directory, mark, str(timeline), by,
                                  f"{max(1, round(wait))}", self.lock_file], timeout=wait + 30)
        if result.rc == LOCK_BUSY_RC:
            raise FileSyncError(f"store {self.store}: an rsync of the agent at {self.source_site} still held "
                                f"{self.lock_file} after {wait:g} s",
                                hint="a long full reconciliation is running there; try again once it has ended "
                                     "(`dcctl filesync status`)")
        result.check(f"handing the file sync of {self.service} over from site {self.source_site}")

    def take_back(self) -> None:
        """Undo hand_over: the source's agent may push again (a rolled-back switchover)."""
        self.source.run(["rm", "-f", self.handover_mark], timeout=30).check(
            f"removing {self.handover_mark} at site {self.source_site}")

    def prune_holding(self) -> list[str]:
        return holding.prune(self.target, self.target_cfg.state_dir, self.service, self.store,
                             self.settings.holding_retention_days)

    def close(self) -> None:
        """Close the SSH master connection this pair opened (ssh -O exit at the source site)."""
        target = self.ssh_target()
        if target is not None and self._ssh_used:
            try:
                self.source.run(ssh_exit_argv(target), timeout=10)
            except DcctlError:
                pass
            self._ssh_used = False

    # ---- switchover: what changed since the last reconciliation ---------------------------------

    def changed_since(self, since: float) -> list[tuple[str, str]]:
        """(find type letter, path) of every entry at the source whose inode changed (ctime) after
        `since`: content, attributes, renames, and directories whose entries were added or removed."""
        stamp = f"@{since - CTIME_MARGIN:.3f}"
        result = self.source.run(["find", self.source_dir, "-newerct", stamp, "-printf", "%y\\0%p\\0"],
                                 timeout=self.settings.reconcile_timeout, env={"LC_ALL": "C"})
        if result.rc != 0:
            raise FileSyncError(f"cannot list changes in {self.source_dir} at site {self.source_site}: "
                                f"{error_tail(result.stderr)}")
        parts = result.stdout.split("\0")
        return [(parts[i], manifest.relative(self.source_dir, parts[i + 1])) for i in range(0, len(parts) - 1, 2)]

    def scope_differences(self, scope: list[str], recursive: list[str]) -> list[manifest.Difference]:
        """Compare both sites over `scope` (each path and, for a directory, its entries) and the
        whole of each `recursive` directory."""
        def both(paths, depth):
            if not paths:
                return {}, {}
            return (manifest.build_scope(self.source, self.source_dir, paths, maxdepth=depth),
                    manifest.build_scope(self.target, self.target_dir, paths, maxdepth=depth))

        a1, b1 = both(scope, 1)
        a2, b2 = both(recursive, None)
        return self.compare({**a1, **a2}, {**b1, **b2})

    def scoped_sync(self, scope_dirs: list[str], scope_files: list[str], *, allow_mass_delete: bool = False,
                    receiver_entries: int | None = None) -> tuple[RunResult, list[str]]:
        """Sync only the changed entries: each changed directory's immediate contents (deletions
        included), each changed file; then, recursively, the directories that run created.
        Returns the first run's result and the created directories."""
        s = self.settings
        paths = [_contents(d.encode("utf-8", "surrogateescape")) for d in scope_dirs] + \
                [f.encode("utf-8", "surrogateescape") for f in scope_files]
        _, output = self._rsync(self._job("scoped", dry_run=True), paths=paths, timeout=s.reconcile_timeout)
        planned = parse_stats(output)
        entries = receiver_entries if receiver_entries is not None else planned.receiver_entries
        verdict = guard(planned.deleted, entries, s.mass_delete_share, s.mass_delete_floor, allow=allow_mass_delete)
        if not verdict.allowed:
            raise MassDeleteRefused(self.store, verdict)
        started = time.time()
        rc, output = self._rsync(self._job("scoped", itemize=True), paths=paths, timeout=s.reconcile_timeout)
        stats = parse_stats(output)
        created = parse_created_dirs(output)
        if created:
            self._rsync(self._job("scoped", recursive=True),
                        paths=[c.encode("utf-8", "surrogateescape") for c in created], timeout=s.reconcile_timeout)
        return RunResult(started, time.time(), stats, rc, tuple(created)), created

    # ---- rejoin: files the old primary got after the last sync -----------------------------------

    def quarantine_candidates(self, since: float | None) -> list[str]:
        """Non-directories in the SOURCE store (here: the old primary) changed after `since` (all
        when unknown) that the other site does not hold identically (type, size, SHA-256).

        Names are listed byte-exact (str with surrogate escapes for bytes that are not UTF-8): a
        name the text listings cannot carry is always a candidate, never left to the resync, which
        would move it to the holding area unreported."""
        argv = ["sh", "-c", HEX_FIND, "dcctl-list", self.source_dir, "!", "-type", "d"]
        if since is not None:
            argv += ["-newerct", f"@{since - CTIME_MARGIN:.3f}"]
        result = self.source.run(argv, timeout=self.settings.reconcile_timeout, env={"LC_ALL": "C"})
        if result.rc != 0:
            raise FileSyncError(f"cannot list {self.source_dir} at site {self.source_site}: "
                                f"{error_tail(result.stderr)}")
        candidates = [manifest.relative(self.source_dir, p) for p in hex_paths(result.stdout)]
        if not candidates:
            return []
        plain = [p for p in candidates if not _has_raw_bytes(p)]
        here = _with_sums(self.source, self.source_dir, plain) if plain else {}
        there = _with_sums(self.target, self.target_dir, plain) if plain else {}
        differ = [path for path, entry in here.items() if not _same_content(entry, there.get(path))]
        return sorted(set(differ) | {p for p in candidates if _has_raw_bytes(p)})

    def quarantine(self, paths: list[str], tag: str) -> str:
        """Move `paths` out of the source store into its quarantine folder (same relative paths, all
        attributes kept), at the source site; returns the folder."""
        directory = layout.quarantine_dir(self.source_cfg.state_dir, self.service, self.store, tag)
        self.source.run(["mkdir", "-p", directory], timeout=30).check(f"creating {directory}")
        argv = [*shlex.split(self.settings.rsync_path), "-aHAX", "--numeric-ids", "--remove-source-files",
                "--files-from=-", "--from0", self.source_dir.rstrip("/") + "/", directory + "/"]
        result = self.source.run(argv, input=files_from([p.encode("utf-8", "surrogateescape") for p in paths]),
                                 timeout=self.settings.reconcile_timeout, env={"LC_ALL": "C"})
        if result.rc not in OK_CODES:
            raise FileSyncError(f"moving {len(paths)} file(s) of store {self.store} into {directory} at site "
                                f"{self.source_site}: {describe_exit(result.rc)}: {error_tail(result.stderr)}")
        return directory


# find's NUL-separated names as hex (od), so that no byte of a name is lost to text decoding; the
# exit status is find's, not od's.
HEX_FIND = ('exec 4>&1; rc=$( { { find "$@" -printf "%p\\0"; echo $? >&3; } | od -An -v -tx1 >&4; } 3>&1 ); '
            'exit "$rc"')


def hex_paths(output: str) -> list[str]:
    """`od -An -tx1` of NUL-separated names -> the names (str; bytes that are not UTF-8 kept as
    surrogate escapes, as os.fsdecode does).

    >>> hex_paths(" 2f 73 2f 61 00 2f 73 2f ff 00")
    ['/s/a', '/s/\\udcff']
    """
    raw = bytes.fromhex("".join(output.split()))
    return [name.decode("utf-8", "surrogateescape") for name in raw.split(b"\0") if name]


def _has_raw_bytes(name: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in name)


def _contents(directory: bytes) -> bytes:
    """A directory as a scoped run names it to sync its immediate entries.

    >>> _contents(b""), _contents(b"a/b")
    (b'./.', b'a/b/.')
    """
    return (directory.rstrip(b"/") or b".") + b"/."


def deletion_dirs(missing: list[bytes], exists) -> list[bytes]:
    """For paths gone at the source, the nearest directory that still exists there (b"" is the
    store itself): syncing its entries deletes them on the receiver.

    >>> present = {b"a", b"a/b"}
    >>> deletion_dirs([b"a/b/c/d", b"a/x", b"top", b"a/b/c"], lambda p: p in present)
    [b'', b'a', b'a/b']
    """
    out = set()
    for path in missing:
        parent = path.rsplit(b"/", 1)[0] if b"/" in path else b""
        while parent and not exists(parent):
            parent = parent.rsplit(b"/", 1)[0] if b"/" in parent else b""
        out.add(parent)
    return sorted(out)


def _with_sums(transport: Transport, root: str, paths: list[str]) -> manifest.Manifest:
    found = manifest.build_scope(transport, root, paths, maxdepth=0)
    files = [p for p, e in found.items() if e.kind == "f"]
    if not files:
        return found
    listing = b"".join(posixpath.join(root, p).encode("utf-8", "surrogateescape") + b"\0" for p in files)
    result = transport.run(["xargs", "-0", "-r", "sha256sum", "-z", "--"], input=listing, timeout=3600,
                           env={"LC_ALL": "C"})
    sums = {manifest.relative(root, path): digest for path, digest in manifest.parse_checksums(result.stdout).items()}
    return manifest.with_checksums(found, sums)


def _same_content(a: manifest.Entry, b: manifest.Entry | None) -> bool:
    if b is None or a.kind != b.kind:
        return False
    if a.kind == "f":
        return a.size == b.size and a.sha256 is not None and a.sha256 == b.sha256
    if a.kind == "l":
        return a.link == b.link
    return True


# ---- reading what the sites recorded --------------------------------------------------------------

def _read(transport: Transport, path: str, parse):
    try:
        return parse(transport.read_file(path).decode())
    except DcctlError as exc:
        if "no such file" in exc.message:
            return None
        raise
    except (ValueError, TypeError, KeyError):
        return None  # a torn or foreign file: treated as absent


def read_status(transport: Transport, state_dir: str, service: str) -> SyncStatus | None:
    return _read(transport, layout.status_path(state_dir, service), SyncStatus.from_json)


def read_receipt(transport: Transport, state_dir: str, service: str, store: str) -> Receipt | None:
    return _read(transport, layout.receipt_path(state_dir, service, store), Receipt.from_json)


def read_run(transport: Transport, state_dir: str, service: str, store: str) -> RunRecord | None:
    return _read(transport, layout.run_path(state_dir, service, store), RunRecord.from_json)


def cli_tag() -> str:
    return f"cli-{os.getpid()}"
