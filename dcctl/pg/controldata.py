"""pg_controldata output -> ControlData (pure).

>>> cd = parse_controldata('''Database cluster state:               shut down
... Latest checkpoint location:           0/3000148
... Latest checkpoint's REDO location:    0/3000148
... Latest checkpoint's TimeLineID:       2
... Minimum recovery ending location:     0/0
... Min recovery ending loc's timeline:   0
... wal_log_hints setting:                on
... Data page checksum version:           1
... ''')
>>> cd.state, cd.checkpoint_lsn, cd.timeline, cd.rewindable
('shut down', '0/3000148', 2, True)
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ControlData:
    state: str
    checkpoint_lsn: str
    redo_lsn: str
    timeline: int
    min_recovery_lsn: str
    min_recovery_timeline: int
    wal_log_hints: bool
    checksums: bool
    raw: dict[str, str]
    wal_segment_size: int = 16 * 1024 * 1024

    @property
    def cleanly_shut_down(self) -> bool:
        return self.state in ("shut down", "shut down in recovery")

    @property
    def rewindable(self) -> bool:
        return self.wal_log_hints or self.checksums


def parse_controldata(text: str) -> ControlData:
    raw = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            raw[name.strip()] = value.strip()
    try:
        return ControlData(
            state=raw["Database cluster state"],
            checkpoint_lsn=raw["Latest checkpoint location"],
            redo_lsn=raw["Latest checkpoint's REDO location"],
            timeline=int(raw["Latest checkpoint's TimeLineID"]),
            min_recovery_lsn=raw.get("Minimum recovery ending location", "0/0"),
            min_recovery_timeline=int(raw.get("Min recovery ending loc's timeline", "0")),
            wal_log_hints=raw.get("wal_log_hints setting") == "on",
            checksums=raw.get("Data page checksum version", "0") != "0",
            raw=raw,
            wal_segment_size=int(raw.get("Bytes per WAL segment", 16 * 1024 * 1024)),
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unexpected pg_controldata output (missing {exc})") from None
