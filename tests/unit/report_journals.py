"""Journals of past operations written as dcctl writes them, at chosen dates, for the history
views and the report pages (the pages are then opened by a real Chromium)."""
from __future__ import annotations

import json
from pathlib import Path

DAY = 86400.0


def write_operation(state_dir: Path, op_id: str, kind: str, ts: float, steps: list[tuple[str, float, float, dict]],
                    outcome: str = "success", old: str = "rabat", new: str = "backup", args: dict | None = None,
                    service: str = "massar") -> Path:
    """steps: (name, start offset s, seconds, observed); a negative seconds marks a failed step."""
    directory = state_dir / "operations" / op_id
    directory.mkdir(parents=True)
    entries = [{"ts": ts, "event": "operation", "op": op_id, "host": "lab", "pid": 1, "kind": kind,
                "service": service, "old_primary": old, "new_primary": new, "args": args or {}}]
    end = ts
    for name, offset, seconds, observed in steps:
        entries.append({"ts": ts + offset, "event": "step_start", "step": name})
        end = ts + offset + abs(seconds)
        if seconds < 0:
            entries.append({"ts": end, "event": "step_fail", "step": name, "error": f"{name} failed"})
        else:
            entries.append({"ts": end, "event": "step_end", "step": name, "seconds": seconds, "observed": observed})
    entries.append({"ts": end + 0.01, "event": "finish", "outcome": outcome,
                    **({"reason": "a check failed"} if outcome != "success" else {})})
    (directory / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    return directory


def drill_steps(rto: float, rpo: float, copy_bytes: int = 64425242) -> list[tuple[str, float, float, dict]]:
    return [("preflight", 0.0, 0.05, {}), ("copy", 0.06, 6.2, {"copy_bytes": copy_bytes, "copy_seconds": 6.2}),
            ("start", 6.3, rto - 0.02, {"start_seconds": rto - 0.02}),
            ("promote", 6.3 + rto - 0.02, 0.02, {"promote_seconds": 0.02, "rto_seconds": rto, "rpo_seconds": rpo,
                                                "rpo_bytes": 8192}),
            ("verify", 6.4 + rto, 0.3, {"checks": [{"name": "catalog readable", "kind": "sql", "passed": True,
                                                    "detail": "SELECT 1 returned 1"}]}),
            ("cleanup", 6.8 + rto, 1.1, {"cleanup_seconds": 1.1})]


def switchover_steps(window: float) -> list[tuple[str, float, float, dict]]:
    return [("preflight", 0.0, 0.1, {}), ("stop_primary", 0.2, 0.4, {"writes_stopped_at": None}),
            ("promote", 0.7, window - 0.5, {"standby_replayed_lsn": "0/5000028", "shutdown_checkpoint_lsn": "0/5000028"}),
            ("start_old_primary_as_standby", window + 0.3, 1.2, {})]


def history(state_dir: Path, now: float) -> list[str]:
    """Eight operations over 60 days: drills, a failed drill, switchovers, a failover, a rejoin."""
    ops = []
    for index, days_ago in enumerate((58, 44, 30, 16, 2)):
        ts = now - days_ago * DAY
        failed = index == 2
        steps = drill_steps(1.2 + 0.3 * index, 0.4 + 0.1 * index)
        if failed:
            steps = steps[:4] + [("verify", steps[4][1], -0.3, {})]
        ops.append(write_operation(state_dir, f"2026{index:04d}T000000Z-drill-{index:06x}", "drill", ts, steps,
                                   outcome="failed" if failed else "success", args={"mode": "non-disruptive"}).name)
    for index, days_ago in enumerate((50, 21)):
        ts = now - days_ago * DAY
        directory = write_operation(state_dir, f"2026{index:04d}T100000Z-switchover-{index:06x}", "switchover", ts,
                                    switchover_steps(0.9 + index))
        _set_window(directory, ts + 0.2, ts + 1.1 + index)
        ops.append(directory.name)
    ts = now - 10 * DAY
    directory = write_operation(state_dir, "20260000T200000Z-failover-000001", "failover", ts,
                                [("fence", 0.0, 2.0, {}), ("promote", 2.1, 1.5, {"last_received_lsn": "0/6000000"})])
    _set_window(directory, None, ts + 3.6)
    ops.append(directory.name)
    ops.append(write_operation(state_dir, "20260000T210000Z-rejoin-000001", "rejoin", now - 9 * DAY,
                               [("rewind", 0.0, 4.0, {"divergence": "3 transactions discarded"})],
                               old="rabat", new="backup").name)
    return ops


def _set_window(directory: Path, stopped: float | None, writable: float) -> None:
    """Record writes_stopped_at / writable_at as the real steps do (build_report computes the window)."""
    path = directory / "journal.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    for entry in entries:
        if entry.get("event") == "step_end" and entry["step"] == "promote":
            entry["observed"]["writable_at"] = writable
            if stopped is not None:
                entry["observed"]["writes_stopped_at"] = stopped
        if entry.get("event") == "step_end" and entry["step"] == "stop_primary":
            entry["observed"].pop("writes_stopped_at", None)
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
