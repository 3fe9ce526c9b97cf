"""Numbers as people read them (pure)."""
from __future__ import annotations


def human_bytes(value: int | None) -> str:
    """
    >>> human_bytes(0), human_bytes(1536), human_bytes(None)
    ('0 B', '1.5 KiB', '-')
    """
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)
