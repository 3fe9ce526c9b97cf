"""PostgreSQL LSNs as integers (pure).

>>> parse_lsn("0/3000148")
50331976
>>> format_lsn(parse_lsn("16/B374D848"))
'16/B374D848'
>>> lsn_diff("0/3000200", "0/3000148")
184
"""
from __future__ import annotations


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    if not _ or not high or not low:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) + int(low, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def lsn_diff(ahead: str | int, behind: str | int) -> int:
    return _as_int(ahead) - _as_int(behind)


def _as_int(lsn: str | int) -> int:
    return parse_lsn(lsn) if isinstance(lsn, str) else lsn
