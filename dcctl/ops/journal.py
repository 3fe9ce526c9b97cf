"""The journal of one operation: append-only JSON lines, fsynced, so a crash loses at most the
line being written. `dcctl resume` and `dcctl history` read it back; the report is built from it."""
from __future__ import annotations

import json
import math
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dcctl.errors import DcctlError, ExitCode, UsageError


def new_operation_id(kind: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{kind}-{secrets.token_hex(3)}"


def operations_dir(state_dir: str | Path) -> Path:
    return Path(state_dir) / "operations"


class Journal:
    def __init__(self, path: Path):
        self.path = path
        self.torn_lines: list[int] = []  # of the last entries(): lines cut short by a crash, skipped

    @classmethod
    def create(cls, state_dir: str | Path, op_id: str, header: dict[str, Any]) -> "Journal":
        directory = operations_dir(state_dir) / op_id
        directory.mkdir(parents=True, exist_ok=True)
        journal = cls(directory / "journal.jsonl")
        journal.append("operation", op=op_id, host=socket.gethostname(), pid=os.getpid(), **header)
        return journal

    @classmethod
    def open(cls, state_dir: str | Path, op_id: str) -> "Journal":
        if not op_id or "/" in op_id or op_id in (".", "..") or "\0" in op_id:
            raise UsageError(f"{op_id!r} is not an operation id", hint="`dcctl history` lists them")
        return cls(operations_dir(state_dir) / op_id / "journal.jsonl")

    @property
    def directory(self) -> Path:
        return self.path.parent

    def append(self, event: str, *, durable: bool = True, **data: Any) -> dict[str, Any]:
        """Adds an entry. durable=False leaves it to the next durable append to reach the disk (an
        fsync flushes everything written to the file before it): for an entry nothing acts on
        until the next one is written, where losing it in a crash leaves the state the crash would
        have found a moment earlier."""
        entry = {"ts": time.time(), "event": event, **data}
        line = json.dumps(entry, default=str, ensure_ascii=False) + "\n"
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line  # end a line torn by a crash first, so that this entry stays readable
            os.write(fd, line.encode())
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """The journal's entries, in order.

        A line that is not UTF-8 JSON was cut short by a crash while it was written (the write
        never returned, so nothing it announced was done): it is skipped and its number kept in
        `torn_lines` (see `torn_note`). A line that is JSON but no journal entry means the file
        is not what dcctl wrote: JournalError.
        """
        self.torn_lines = []
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc.strerror or exc}") from None
        entries = []
        for number, line in enumerate(data.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                self.torn_lines.append(number)
                continue
            except RecursionError:
                entry = None  # nested deeper than any entry dcctl writes
            problem = entry_problem(entry)
            if problem:
                raise JournalError(f"{self.path}: line {number} is not a dcctl journal entry: {problem}",
                                   hint="the file was changed by something other than dcctl; move it aside "
                                        "(its operation then no longer shows in `dcctl history`)")
            entries.append(entry)
        return entries

    def torn_note(self) -> str | None:
        """One line saying which torn lines the last entries() skipped, or None."""
        torn = self.torn_lines
        if not torn:
            return None
        where = ", ".join(map(str, torn[:5])) + (" ..." if len(torn) > 5 else "")
        return (f"operation {self.directory.name}: ignored {len(torn)} torn journal line(s) (line {where} of "
                f"{self.path}): a write cut short by a crash")

    def state(self) -> "JournalState":
        """The operation's state, or JournalError when the journal cannot be read as one."""
        entries = self.entries()
        if not entries and self.torn_lines:
            raise JournalError(f"{self.path}: no readable entry (line {self.torn_lines[0]} is not UTF-8 JSON)")
        return JournalState.read(entries, str(self.path))


@dataclass
class JournalState:
    """What a journal says happened (pure reading of its entries)."""

    header: dict[str, Any]
    started: list[str] = field(default_factory=list)
    ended: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    outcome: str | None = None
    observed: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, entries: list[dict[str, Any]], source: str = "the journal") -> "JournalState":
        if not entries:
            raise JournalError(f"{source}: no readable entry")
        problem = header_problem(entries[0])
        if problem:
            raise JournalError(f"{source}: the first entry is not an operation header: {problem}",
                               hint="the file was changed by something other than dcctl; move it aside")
        state = cls(header=entries[0])
        for entry in entries[1:]:
            event = entry["event"]
            if event == "step_start":
                state.started.append(entry["step"])
            elif event == "step_end":
                state.ended[entry["step"]] = entry
                state.observed.update(entry.get("observed") or {})
            elif event == "step_fail":
                state.failed[entry["step"]] = entry.get("error", "")
            elif event == "finish":
                state.outcome = entry["outcome"]
        return state

    @property
    def finished(self) -> bool:
        return self.outcome is not None


def list_operations(state_dir: str | Path) -> list[tuple[str, JournalState]]:
    return scan_operations(state_dir)[0]


def scan_operations(state_dir: str | Path) -> tuple[list[tuple[str, JournalState]], list[str]]:
    """The readable operations, oldest first, and one line for each journal that was skipped or
    had torn lines skipped, so that nothing vanishes from `history` unsaid."""
    found: list[tuple[str, JournalState]] = []
    notes: list[str] = []
    base = operations_dir(state_dir)
    if not base.exists():
        return found, notes
    for directory in sorted(base.iterdir()):
        journal = Journal(directory / "journal.jsonl")
        if not journal.path.is_file():
            continue
        try:
            found.append((directory.name, journal.state()))
        except JournalError as exc:
            notes.append(f"operation {directory.name} skipped: {exc.message}")
            continue
        torn = journal.torn_note()
        if torn:
            notes.append(torn)
    return sorted(found, key=lambda item: item[1].header["ts"]), notes


class JournalError(DcctlError, ValueError):
    """A journal that cannot be read as an operation record."""

    exit_code = ExitCode.REFUSED


STEP_EVENTS = ("step_start", "step_end", "step_fail")
LATEST_TS = 253402300799  # 9999-12-31: beyond it a timestamp cannot be shown as a date


def entry_problem(entry: Any) -> str | None:
    """Why `entry` is not a journal entry dcctl could have written, or None."""
    if not isinstance(entry, dict):
        return f"expected a JSON object, got {type(entry).__name__}"
    if not isinstance(entry.get("event"), str) or not entry["event"]:
        return "no event name"
    if not _is_time(entry.get("ts")):
        return "no valid ts (epoch seconds)"
    if _depth(entry) > 32:
        return "nested deeper than any entry dcctl writes"
    event = entry["event"]
    if event in STEP_EVENTS and not isinstance(entry.get("step"), str):
        return f"{event} without a step name"
    if event == "step_end" and not (entry.get("observed") is None or isinstance(entry["observed"], dict)):
        return "step_end whose observed is not an object"
    if event == "step_end" and not (entry.get("seconds") is None or _is_number(entry["seconds"])):
        return "step_end whose seconds is not a number"
    if event == "finish" and not isinstance(entry.get("outcome"), str):
        return "finish without an outcome"
    return None


def header_problem(entry: dict[str, Any]) -> str | None:
    if entry.get("event") != "operation":
        return f"its event is {entry.get('event')!r}, expected 'operation'"
    for name in ("op", "kind", "service"):
        if not isinstance(entry.get(name), str) or not entry[name]:
            return f"no {name}"
    for name in ("old_primary", "new_primary"):
        if not isinstance(entry.get(name), (str, type(None))):
            return f"{name} is not a site name"
    if not isinstance(entry.get("args", {}), dict):
        return "args is not an object"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_time(value: Any) -> bool:
    return _is_number(value) and 0 <= value <= LATEST_TS


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def last_success(state_dir: str | Path, kind: str, service: str) -> float | None:
    """When the newest successful operation of this kind for this service finished (epoch seconds)."""
    newest = None
    base = operations_dir(state_dir)
    if not base.exists():
        return None
    for directory in base.iterdir():
        if f"-{kind}-" not in directory.name:
            continue
        try:
            entries = Journal(directory / "journal.jsonl").entries()
        except JournalError:
            continue  # `dcctl history` names it
        if entries and entries[0].get("service") == service and entries[-1].get("event") == "finish" \
                and entries[-1].get("outcome") == "success":
            newest = max(newest or 0.0, entries[-1]["ts"])
    return newest
