"""The journal of one operation: append-only JSON lines, fsynced, so a crash loses at most the
line being written. `dcctl resume` and `dcctl history` read it back; the report is built from it."""
from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def new_operation_id(kind: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{kind}-{secrets.token_hex(3)}"


def operations_dir(state_dir: str | Path) -> Path:
    return Path(state_dir) / "operations"


class Journal:
    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, state_dir: str | Path, op_id: str, header: dict[str, Any]) -> "Journal":
        directory = operations_dir(state_dir) / op_id
        directory.mkdir(parents=True, exist_ok=True)
        journal = cls(directory / "journal.jsonl")
        journal.append("operation", op=op_id, host=socket.gethostname(), pid=os.getpid(), **header)
        return journal

    @classmethod
    def open(cls, state_dir: str | Path, op_id: str) -> "Journal":
        return cls(operations_dir(state_dir) / op_id / "journal.jsonl")

    @property
    def directory(self) -> Path:
        return self.path.parent

    def append(self, event: str, **data: Any) -> dict[str, Any]:
        entry = {"ts": time.time(), "event": event, **data}
        line = json.dumps(entry, default=str, ensure_ascii=False) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        entries = []
        for line in self.path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from a crash
        return entries


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
    def read(cls, entries: list[dict[str, Any]]) -> "JournalState":
        if not entries or entries[0]["event"] != "operation":
            raise ValueError("not an operation journal")
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
    found = []
    base = operations_dir(state_dir)
    if not base.exists():
        return found
    for directory in sorted(base.iterdir()):
        journal = Journal(directory / "journal.jsonl")
        try:
            found.append((directory.name, JournalState.read(journal.entries())))
        except (ValueError, KeyError):
            continue
    return sorted(found, key=lambda item: item[1].header["ts"])


def last_success(state_dir: str | Path, kind: str, service: str) -> float | None:
    """When the newest successful operation of this kind for this service finished (epoch seconds)."""
    newest = None
    base = operations_dir(state_dir)
    if not base.exists():
        return None
    for directory in base.iterdir():
        if f"-{kind}-" not in directory.name:
            continue
        entries = Journal(directory / "journal.jsonl").entries()
        if entries and entries[0].get("service") == service and entries[-1].get("event") == "finish" \
                and entries[-1].get("outcome") == "success":
            newest = max(newest or 0.0, entries[-1]["ts"])
    return newest
