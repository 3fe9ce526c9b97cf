"""`dcctl check -o nagios` and `-o tsv`: the results for monitoring systems and scripts (pure).

nagios follows the monitoring-plugin format that Nagios, Icinga, Naemon and Zabbix read: one
status line `DCCTL <STATE>: <summary> | <perfdata>`, then one detail line per result, worst
first. Perfdata is `'label'=value[unit];warn;crit;min;max`, with the thresholds of the config.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from dcctl.config.schema import Thresholds

STATE_WORDS = {"OK": "OK", "WARN": "WARNING", "CRIT": "CRITICAL", "UNKNOWN": "UNKNOWN"}
TSV_COLUMNS = ("service", "check", "site", "status", "value", "threshold", "detail")


@dataclass(frozen=True)
class Perf:
    """How one check's value becomes perfdata: unit, scale, and the config's warn/crit."""

    unit: str
    warn: Callable[[Thresholds], str] | None = None
    crit: Callable[[Thresholds], str] | None = None
    scale: float = 1.0
    bounds: str = ";0"  # ";min" or ";min;max"


def number(value: float) -> str:
    """A perfdata number: plain digits, never an exponent.

    >>> number(268435456), number(0.002), number(15.0), number(1.5e-7)
    ('268435456', '0.002', '15', '0')
    """
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _above(value: float) -> str:
    return number(value)


def _below(value: float) -> str:
    return f"{number(value)}:"  # a plugin range "N:" alerts when the value falls below N


# Only checks whose value is a measurement; the others (up, one primary ...) have no number to graph.
PERF: dict[str, Perf] = {
    "replication_lag_bytes": Perf("B", lambda t: _above(t.lag_bytes_warn), lambda t: _above(t.lag_bytes_crit)),
    "replication_lag_seconds": Perf("s", lambda t: _above(t.lag_seconds_warn), lambda t: _above(t.lag_seconds_crit)),
    "replication_slots": Perf("B", lambda t: _above(t.slot_retained_bytes_warn),
                              lambda t: _above(t.slot_retained_bytes_crit)),
    "receiver_contact": Perf("s"),
    "clock_skew": Perf("s", lambda t: _above(t.clock_skew_warn_seconds), lambda t: _above(t.clock_skew_crit_seconds)),
    "drill_age": Perf("s", lambda t: _above(t.drill_max_age_days * 86400), None, scale=86400),
    "disk_free": Perf("%", lambda t: _below(100 * t.disk_free_warn_ratio), lambda t: _below(100 * t.disk_free_crit_ratio),
                      scale=100, bounds=";0;100"),
    "filesync_lag": Perf("s", lambda t: _above(t.filesync_lag_warn_seconds),
                         lambda t: _above(t.filesync_lag_crit_seconds)),
    "filesync_backlog": Perf("", lambda t: _above(t.filesync_backlog_warn), lambda t: _above(t.filesync_backlog_crit)),
    "filesync_reconcile_age": Perf("s", lambda t: _above(t.filesync_reconcile_age_warn_seconds),
                                   lambda t: _above(t.filesync_reconcile_age_crit_seconds)),
}


def nagios(status: str, reports: list[dict[str, Any]], thresholds: dict[str, Thresholds]) -> str:
    """The plugin output of `dcctl check`: `reports` as in its JSON, `thresholds` per service.

    >>> t = Thresholds()
    >>> r = {"name": "replication_lag_bytes", "site": "backup", "status": "OK", "value": 1024,
    ...      "threshold": "warn 16.0 MiB, crit 256.0 MiB", "detail": "standby backup has 1.0 KiB of WAL left"}
    >>> print(nagios("OK", [{"service": "massar", "checks": [r]}], {"massar": t}))
    DCCTL OK: 1 of 1 results OK | 'massar_replication_lag_bytes_backup'=1024B;16777216;268435456;0
    [OK] massar replication_lag_bytes backup: standby backup has 1.0 KiB of WAL left
    """
    results = [(report["service"], r) for report in reports for r in report["checks"]]
    perfdata = " ".join(perf for service, r in results
                        if (perf := perf_item(service, r, thresholds[service], _disk_label(r))) is not None)
    status_line = f"DCCTL {STATE_WORDS[status]}: {summary(status, results)}"
    lines = [status_line + (f" | {perfdata}" if perfdata else "")]
    for service, r in results:
        where = f" {r['site']}" if r["site"] else ""
        lines.append(f"[{r['status']}] {service} {r['name']}{where}: {one_line(r['detail'])}")
    return "\n".join(lines)


def summary(status: str, results: list[tuple[str, dict[str, Any]]]) -> str:
    """How many results are not OK, and the worst one's sentence (results come worst first)."""
    if not results:
        return "no check ran"
    counts = {word: sum(1 for _, r in results if r["status"] == word) for word in ("CRIT", "WARN", "UNKNOWN")}
    if status == "OK":
        return f"{len(results)} of {len(results)} results OK"
    bad = ", ".join(f"{count} {word}" for word, count in counts.items() if count)
    service, first = results[0]
    where = f" {first['site']}" if first["site"] else ""
    return f"{bad} of {len(results)} results; {service} {first['name']}{where}: {one_line(first['detail'])}"


def perf_item(service: str, result: dict[str, Any], thresholds: Thresholds, extra: str | None = None) -> str | None:
    """One perfdata item, or None when the result has no number to report."""
    perf = PERF.get(result["name"])
    value = result["value"]
    if perf is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    parts = [service, result["name"], result["site"], extra]
    label = "_".join(_label_word(p) for p in parts if p)
    warn = perf.warn(thresholds) if perf.warn else ""
    crit = perf.crit(thresholds) if perf.crit else ""
    return f"'{label}'={number(value * perf.scale)}{perf.unit};{warn};{crit}{perf.bounds}"


def _disk_label(result: dict[str, Any]) -> str | None:
    """disk_free has one result per volume of a site; its detail starts with the volume's label."""
    if result["name"] != "disk_free" or ": " not in result["detail"]:
        return None
    return result["detail"].split(": ", 1)[0]


def _label_word(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in str(text))


def one_line(text: Any) -> str:
    """A field on one line: no newline (the plugin format's line breaks) and no `|` (its separator)."""
    return " ".join(str(text).replace("|", "/").split())


def tsv(reports: list[dict[str, Any]]) -> str:
    """A header line, then one line per result: tab-separated, empty for none, no tab in a field.

    >>> lines = tsv([{"service": "massar", "checks": [{"name": "clock_skew", "site": None, "status": "OK",
    ...     "value": 0.002, "threshold": "warn 1, crit 10", "detail": "the clocks" + chr(9) + "differ by 0.002 s"}]}])
    >>> [line.split(chr(9)) for line in lines.splitlines()]  # doctest: +NORMALIZE_WHITESPACE
    [['service', 'check', 'site', 'status', 'value', 'threshold', 'detail'],
     ['massar', 'clock_skew', '', 'OK', '0.002', 'warn 1, crit 10', 'the clocks differ by 0.002 s']]
    """
    lines = ["\t".join(TSV_COLUMNS)]
    for report in reports:
        for r in report["checks"]:
            row = [report["service"], r["name"], r["site"], r["status"], r["value"], r["threshold"], r["detail"]]
            lines.append("\t".join("" if cell is None else " ".join(str(cell).split()) for cell in row))
    return "\n".join(lines)
