"""Watching a store with inotify (inotify_simple), and the pending set events fill.

Why inotify_simple: it hands over every event the kernel queues, IN_Q_OVERFLOW included, and
nothing else (no threads, no move pairing, no hidden queue); watchdog skips IN_Q_OVERFLOW
silently (its issue #654), and missing it is exactly how a mirror drifts without anyone knowing.
We keep the watch-descriptor -> directory map ourselves.

Which event means what (`interpret`, pure):
- a file's content is final at IN_CLOSE_WRITE: pushing at IN_CREATE or IN_MODIFY would send half
  files; a non-regular entry (symlink, fifo) or a new hard link has no close, so IN_CREATE marks it;
- IN_ATTRIB (chmod, chown, touch), IN_DELETE, IN_MOVED_FROM and IN_MOVED_TO mark the path: a path
  that no longer exists at the source is deleted on the receiver;
- a new or moved-in directory is watched, then scanned: files may land in it before its watch exists;
- IN_Q_OVERFLOW, IN_UNMOUNT, or the store itself deleted or moved: events were missed, only a full
  reconciliation can tell what changed;
- IN_IGNORED: a watch is gone (its directory was deleted or moved out).

Not seen by inotify (the periodic reconciliation catches them): writes through mmap, changes made
on another host of a network file system, files written and kept open for ever.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from inotify_simple import INotify, flags

log = logging.getLogger("dcctl.agent.filesync")

WATCH_MASK = (flags.CREATE | flags.CLOSE_WRITE | flags.ATTRIB | flags.DELETE | flags.MOVED_FROM | flags.MOVED_TO
              | flags.DELETE_SELF | flags.MOVE_SELF | flags.DONT_FOLLOW | flags.ONLYDIR | flags.EXCL_UNLINK)

MARK, MARK_TREE, UNWATCH_TREE, CREATED, MISSED, ROOT_GONE, GONE, IGNORE = (
    "mark", "mark_tree", "unwatch_tree", "created", "missed", "root_gone", "gone", "ignore")


def interpret(mask: int, is_root_watch: bool) -> str:
    """What one event asks of the watcher.

    >>> interpret(flags.CLOSE_WRITE, False), interpret(flags.CREATE, False), interpret(flags.CREATE | flags.ISDIR, False)
    ('mark', 'created', 'mark_tree')
    >>> interpret(flags.MOVED_FROM | flags.ISDIR, False), interpret(flags.Q_OVERFLOW, False)
    ('unwatch_tree', 'missed')
    >>> interpret(flags.DELETE_SELF, True), interpret(flags.DELETE_SELF, False), interpret(flags.IGNORED, False)
    ('root_gone', 'ignore', 'gone')
    """
    if mask & flags.Q_OVERFLOW or mask & flags.UNMOUNT:
        return MISSED
    if mask & flags.IGNORED:
        return GONE
    if mask & (flags.DELETE_SELF | flags.MOVE_SELF):
        return ROOT_GONE if is_root_watch else IGNORE
    is_dir = bool(mask & flags.ISDIR)
    if mask & (flags.CREATE | flags.MOVED_TO) and is_dir:
        return MARK_TREE
    if mask & flags.MOVED_FROM and is_dir:
        return UNWATCH_TREE
    if mask & flags.CREATE:
        return CREATED
    if mask & (flags.CLOSE_WRITE | flags.ATTRIB | flags.DELETE | flags.MOVED_FROM | flags.MOVED_TO):
        return MARK
    return IGNORE


def needs_push_at_create(st: os.stat_result) -> bool:
    """A just-created non-directory that will get no IN_CLOSE_WRITE: a symlink, a fifo or device,
    or a new hard link to an existing file."""
    return not stat.S_ISREG(st.st_mode) or st.st_nlink > 1


def watch_limit_problem(error: OSError, watched: int, read_limit: Callable[[str], str | None]) -> str:
    """The sentence (with the sysctl to raise) for a failed inotify_add_watch or inotify_init.

    >>> limits = {"max_user_watches": "8192", "max_user_instances": "128"}.get
    >>> watch_limit_problem(OSError(errno.ENOSPC, "x"), 8190, limits)
    'inotify watch limit reached after 8190 directories (fs.inotify.max_user_watches = 8192): changes in unwatched directories are only found by the periodic reconciliation; raise it, e.g. sysctl -w fs.inotify.max_user_watches=524288 and the same line in /etc/sysctl.d/90-dcctl.conf'
    """
    if error.errno == errno.ENOSPC:
        current = read_limit("max_user_watches")
        wanted = max(524288, 2 * int(current or 0))
        return (f"inotify watch limit reached after {watched} directories (fs.inotify.max_user_watches = "
                f"{current}): changes in unwatched directories are only found by the periodic reconciliation; "
                f"raise it, e.g. sysctl -w fs.inotify.max_user_watches={wanted} and the same line in "
                f"/etc/sysctl.d/90-dcctl.conf")
    if error.errno == errno.EMFILE:
        current = read_limit("max_user_instances")
        return (f"too many inotify instances for this user (fs.inotify.max_user_instances = {current}): raise it, "
                f"e.g. sysctl -w fs.inotify.max_user_instances=1024")
    return f"cannot watch: {error.strerror or error}"


def _sysctl(name: str) -> str | None:
    try:
        with open(f"/proc/sys/fs/inotify/{name}") as fh:
            return fh.read().strip()
    except OSError:
        return None


class Pending:
    """Paths waiting to be pushed, oldest first, each with the time of its first and last event.

    Not thread-safe by itself; the caller holds a lock.

    >>> p = Pending()
    >>> p.add(b"a", 1.0); p.add(b"b", 2.0); p.add(b"a", 3.0)
    >>> len(p), p.oldest()
    (2, 1.0)
    >>> p.take(1)
    [(b'a', 1.0, 3.0)]
    >>> p.drop_seen_before(2.5); len(p)
    0
    """

    def __init__(self) -> None:
        self._items: OrderedDict[bytes, list[float]] = OrderedDict()

    def add(self, path: bytes, when: float) -> None:
        item = self._items.get(path)
        if item is None:
            self._items[path] = [when, when]
        else:
            item[1] = when

    def take(self, limit: int) -> list[tuple[bytes, float, float]]:
        out = []
        while self._items and len(out) < limit:
            path, (first, last) = self._items.popitem(last=False)
            out.append((path, first, last))
        return out

    def put_back(self, items: list[tuple[bytes, float, float]]) -> None:
        """Return items a failed batch took; they keep their first-seen time (and go first)."""
        for path, first, last in reversed(items):
            current = self._items.get(path)
            if current is not None:
                first, last = min(first, current[0]), max(last, current[1])
            self._items[path] = [first, last]
            self._items.move_to_end(path, last=False)

    def drop_seen_before(self, when: float) -> None:
        """Forget paths whose last event came before `when` (a reconciliation started then)."""
        for path in [p for p, (_, last) in self._items.items() if last < when]:
            del self._items[path]

    def clear(self) -> None:
        self._items.clear()

    def oldest(self) -> float | None:
        """The first item is the oldest: new paths go last, and put_back puts returned ones first."""
        for first, _ in self._items.values():
            return first
        return None

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Sink:
    """Where the watcher reports: paths to push, and events that were missed."""

    paths: Callable[[list[bytes]], None]
    missed: Callable[[str], None]  # reason: a full reconciliation is needed
    problem: Callable[[str | None], None]  # a lasting problem (watch limit), None when it cleared


class Watcher:
    """One inotify instance watching every directory of a store; a thread reads its events."""

    def __init__(self, root: str, sink: Sink, name: str = "store"):
        self.root = os.fsencode(root.rstrip("/") or "/")
        self.sink = sink
        self.name = name
        self._inotify: INotify | None = None
        self._dirs: dict[int, bytes] = {}  # watch descriptor -> directory relative to root (b"" is root)
        self._root_wd: int | None = None
        self._stop = threading.Event()
        self._running = threading.Event()  # cleared by pause(): a test holds the reader to fill the queue
        self._running.set()
        self._thread: threading.Thread | None = None
        self._limit_hit = False
        self.events_read = 0

    @property
    def watched_dirs(self) -> int:
        return len(self._dirs)

    def start(self) -> None:
        """Watch the whole tree, then read events in a thread. Raises OSError if the root cannot be watched."""
        try:
            self._inotify = INotify()
        except OSError as exc:
            raise OSError(exc.errno, watch_limit_problem(exc, 0, _sysctl)) from None
        self._root_wd = self._inotify.add_watch(self.root, WATCH_MASK)
        self._dirs[self._root_wd] = b""
        self._watch_tree(b"", collect=None)
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"dcctl-watch-{self.name}")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        self._dirs.clear()

    def pause(self) -> None:
        """Stop reading events (they queue up in the kernel, and overflow past max_queued_events)."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    # ---- the reader ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._running.wait()
            if self._stop.is_set():
                return
            try:
                events = self._inotify.read(timeout=200)
            except (OSError, ValueError):
                if self._stop.is_set():
                    return
                raise
            if events:
                self.events_read += len(events)
                self._handle(events)

    def _handle(self, events) -> None:
        marked: list[bytes] = []
        for event in events:
            action = interpret(event.mask, event.wd == self._root_wd)
            if action == MISSED:
                self.sink.paths(marked)
                marked = []
                what = "inotify queue overflow (events were dropped)" if event.mask & flags.Q_OVERFLOW else \
                    "the store's file system was unmounted"
                self.sink.missed(what)
                continue
            if action == GONE:
                self._dirs.pop(event.wd, None)
                continue
            if action == ROOT_GONE:
                self.sink.missed("the store directory itself was deleted or moved")
                continue
            if action == IGNORE:
                continue
            parent = self._dirs.get(event.wd)
            if parent is None:
                continue  # a watch we already dropped
            path = _join(parent, os.fsencode(event.name))
            if action == MARK:
                marked.append(path)
            elif action == CREATED:
                try:
                    if needs_push_at_create(os.lstat(self._abs(path))):
                        marked.append(path)
                except FileNotFoundError:
                    marked.append(path)  # already gone again: the receiver must not keep it
            elif action == MARK_TREE:
                marked.append(path)
                self._watch_tree(path, collect=marked)
            elif action == UNWATCH_TREE:
                marked.append(path)
                self._unwatch_tree(path)
        if marked:
            self.sink.paths(marked)

    # ---- watches ------------------------------------------------------------------------------

    def _abs(self, relative: bytes) -> bytes:
        return self.root + b"/" + relative if relative else self.root

    def _watch_tree(self, top: bytes, collect: list[bytes] | None) -> None:
        """Watch every directory under `top` (already watched itself unless it is new); with
        `collect`, also list every entry under it (a new directory's contents)."""
        stack = [top]
        while stack:
            relative = stack.pop()
            absolute = self._abs(relative)
            if (relative != top or collect is not None) and not self._add_watch(absolute, relative) \
                    and collect is None:
                continue  # unwatchable (gone, or the watch limit): the reconciliation covers it
            try:
                with os.scandir(absolute) as entries:
                    for entry in entries:
                        child = _join(relative, entry.name)
                        if collect is not None:
                            collect.append(child)
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                stack.append(child)
                        except OSError:
                            continue
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while we looked: its deletion event follows
            except PermissionError as exc:
                self.sink.problem(f"cannot read directory {os.fsdecode(absolute)}: {exc.strerror}")

    def _add_watch(self, absolute: bytes, relative: bytes) -> bool:
        try:
            wd = self._inotify.add_watch(absolute, WATCH_MASK)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return False
            if exc.errno == errno.ENOSPC:
                if not self._limit_hit:
                    self._limit_hit = True
                    self.sink.problem(watch_limit_problem(exc, len(self._dirs), _sysctl))
                    self.sink.missed("inotify watch limit reached")
                return False
            self.sink.problem(f"cannot watch {os.fsdecode(absolute)}: {exc.strerror}")
            return False
        self._dirs[wd] = relative
        return True

    def _unwatch_tree(self, top: bytes) -> None:
        prefix = top + b"/"
        for wd in [wd for wd, path in self._dirs.items() if path == top or path.startswith(prefix)]:
            del self._dirs[wd]
            try:
                self._inotify.rm_watch(wd)
            except OSError:
                pass


def _join(parent: bytes, name: bytes) -> bytes:
    return parent + b"/" + name if parent else name

