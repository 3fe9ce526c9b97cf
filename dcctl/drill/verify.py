"""Drill verification: each configured expectation against the value a query returned (pure)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from dcctl.config.schema import SqlCheckConfig


def judge(check: SqlCheckConfig, value: Any, primary_now: datetime | None) -> tuple[bool, str]:
    """(passed, sentence).

    >>> from dcctl.config.schema import SqlCheckConfig
    >>> judge(SqlCheckConfig(name="rows", query="q", expect="at_least", value=10), 12, None)
    (True, 'rows: 12 >= 10')
    >>> judge(SqlCheckConfig(name="ok", query="q"), False, None)
    (False, 'ok: returned False, expected true')
    """
    if check.expect == "true":
        return (value is True, f"{check.name}: returned {value!r}" + ("" if value is True else ", expected true"))
    if check.expect == "at_least":
        assert check.value is not None  # the config's loader requires it for at_least
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False, f"{check.name}: returned {value!r}, expected a number >= {check.value:g}"
        passed = value >= check.value
        return passed, f"{check.name}: {value:g} {'>=' if passed else '<'} {check.value:g}"
    if not isinstance(value, datetime):
        return False, f"{check.name}: returned {value!r}, expected a timestamp"
    if primary_now is None:
        return False, f"{check.name}: the primary's clock could not be read"
    age_minutes = (primary_now - value).total_seconds() / 60
    assert check.value is not None  # the config's loader requires it for newer_than_minutes
    passed = age_minutes <= check.value
    return passed, (f"{check.name}: newest {value.isoformat()} is {age_minutes:.1f} min old "
                    f"({'<=' if passed else '>'} {check.value:g})")
