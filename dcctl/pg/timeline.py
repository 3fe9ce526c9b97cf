"""Timeline history and what a rewind would discard (pure)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field


def parse_history(text: str) -> list[tuple[int, str]]:
    """A timeline history file -> [(parent timeline, switch LSN), ...].

    >>> parse_history("1\\t0/3000148\\tno recovery target specified\\n\\n2\\t0/5000060\\tno recovery target specified\\n")
    [(1, '0/3000148'), (2, '0/5000060')]
    """
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        entries.append((int(parts[0]), parts[1]))
    return entries


def fork_point(history: list[tuple[int, str]], old_timeline: int) -> str | None:
    """Where the current primary's history left `old_timeline`; None if it never did
    (the old node is on the primary's own timeline).

    >>> fork_point([(1, '0/3000148'), (2, '0/5000060')], 2)
    '0/5000060'
    >>> fork_point([(1, '0/3000148')], 2) is None
    True
    """
    for parent, switch_lsn in history:
        if parent == old_timeline:
            return switch_lsn
    return None


_RECORD = re.compile(r"rmgr: (\w+)\s.*?tx:\s+(\d+), lsn: ([0-9A-F]+/[0-9A-F]+).*?desc: (.*)$")
_COMMIT = re.compile(r"^COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \w+)")
_REL = re.compile(r"rel (\d+)/(\d+)/(\d+)")


@dataclass
class Divergence:
    commits: int = 0
    first_commit_at: str | None = None
    last_commit_at: str | None = None
    relations: set[tuple[int, int]] = field(default_factory=set)  # (database oid, relfilenode)
    records: int = 0
    last_lsn: str | None = None


def summarize_waldump(output: str) -> Divergence:
    """Count committed transactions and the relations they wrote, from pg_waldump text.

    >>> out = '''rmgr: Heap        len (rec/tot):     59/    59, tx:        740, lsn: 0/05000098, prev 0/05000060, desc: INSERT off 3 flags 0x00, blkref #0: rel 1663/16384/16390 blk 0
    ... rmgr: Transaction len (rec/tot):     34/    34, tx:        740, lsn: 0/050000D8, prev 0/05000098, desc: COMMIT 2026-11-24 05:30:01.123456 UTC
    ... rmgr: Heap        len (rec/tot):     59/    59, tx:        741, lsn: 0/05000100, prev 0/050000D8, desc: INSERT off 4 flags 0x00, blkref #0: rel 1663/16384/16391 blk 0
    ... rmgr: Transaction len (rec/tot):     34/    34, tx:        741, lsn: 0/05000140, prev 0/05000100, desc: ABORT 2026-11-24 05:30:02.000000 UTC'''
    >>> d = summarize_waldump(out)
    >>> d.commits, d.first_commit_at, sorted(d.relations), d.records
    (1, '2026-11-24 05:30:01.123456 UTC', [(16384, 16390)], 4)
    """
    summary = Divergence()
    touched: dict[str, set[tuple[int, int]]] = {}
    for line in output.splitlines():
        match = _RECORD.search(line)
        if not match:
            continue
        rmgr, xid, lsn, desc = match.groups()
        summary.records += 1
        summary.last_lsn = lsn
        for _tablespace, database, relfilenode in _REL.findall(line):
            touched.setdefault(xid, set()).add((int(database), int(relfilenode)))
        if rmgr == "Transaction":
            commit = _COMMIT.match(desc)
            if commit:
                summary.commits += 1
                summary.first_commit_at = summary.first_commit_at or commit.group(1)
                summary.last_commit_at = commit.group(1)
                summary.relations |= touched.pop(xid, set())
            elif desc.startswith("ABORT"):
                touched.pop(xid, None)
    return summary


def wal_segment_name(timeline: int, lsn: str, segment_size: int = 16 * 1024 * 1024) -> str:
    """The WAL file that holds `lsn` on `timeline`.

    >>> wal_segment_name(3, "0/304A7B8")
    '000000030000000000000003'
    >>> wal_segment_name(1, "1/A0000000")
    '0000000100000001000000A0'
    """
    from dcctl.pg.lsn import parse_lsn

    segno = parse_lsn(lsn) // segment_size
    per_id = 0x100000000 // segment_size
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


def waldump_trouble(stderr: str, start: str) -> str | None:
    """None when pg_waldump stopped where the WAL ends (or found nothing after `start`);
    otherwise what went wrong, which makes any count from it untrustworthy.

    >>> waldump_trouble("pg_waldump: error: error in WAL record at 0/5000140: invalid record length at 0/5000178: wanted 24, got 0", "0/5000060") is None
    True
    >>> waldump_trouble("pg_waldump: error: could not find a valid record after 0/5000060", "0/5000060") is None
    True
    >>> waldump_trouble("pg_waldump: error: could not read file x: header specifies 0 bytes", "0/5000060")
    'pg_waldump: error: could not read file x: header specifies 0 bytes'
    """
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    for line in lines:
        if "error in WAL record at" in line or f"could not find a valid record after {start}" in line:
            continue
        return line
    return None
