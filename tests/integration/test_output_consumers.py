"""`dcctl status` and `dcctl check` on the lab, as each consumer reads them: plain lines in a pipe
(what dcctl-check.service writes to the journal), rich tables on a terminal, the monitoring-plugin
format for Nagios/Icinga/Zabbix, TSV for scripts."""
import json
import os
import pty
import subprocess
import sys

import pytest

from tests.integration.conftest import dcctl, local_lab  # noqa: F401
from tests.unit.test_report_views import PERF_ITEM

pytestmark = pytest.mark.lab
BOX = set("┏┓┗┛━┃│─┡┩╇┳┻╋┼")


def on_a_terminal(*args: str, config: str) -> str:
    """Run dcctl with its stdout on a pseudo-terminal, as an operator at a shell sees it."""
    master, slave = pty.openpty()
    env = dict(os.environ, DCCTL_CONFIG=config, COLUMNS="200", LINES="50", TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "dcctl", *args], stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=120)
    os.close(master)
    return b"".join(chunks).decode()


def assert_plain(text: str) -> list[str]:
    lines = text.splitlines()
    assert lines and not BOX & set(text), text
    assert all(line == line.rstrip() for line in lines), [line for line in lines if line != line.rstrip()]
    return lines


def test_status_in_a_pipe_is_plain_lines_one_per_site(local_lab):
    lines = assert_plain(dcctl("status", config=str(local_lab.spec.config_path)).stdout)
    assert lines[0] == "service massar" and lines[1].split()[:3] == ["site", "reachable", "postgres"]
    rows = {line.split()[0]: line.split() for line in lines[2:4]}
    assert rows["rabat"][1:4] == ["yes", "up", "primary"] and rows["backup"][1:4] == ["yes", "up", "standby"]


def test_status_on_a_terminal_keeps_the_table(local_lab):
    text = on_a_terminal("status", config=str(local_lab.spec.config_path))
    assert BOX & set(text) and "rabat" in text and "standby" in text


def test_check_in_a_pipe_is_plain_lines_with_whole_paths(local_lab):
    config = str(local_lab.spec.config_path)
    result = dcctl("check", config=config, check=False)
    as_json = dcctl("check", "-o", "json", config=config, check=False)
    assert result.returncode == as_json.returncode == 3  # no drill yet, no agent: UNKNOWN
    lines = assert_plain(result.stdout)
    assert lines[0] == "service massar: UNKNOWN" and lines[1].split()[:3] == ["status", "check", "site"]
    checks = json.loads(as_json.stdout)["services"][0]["checks"]
    assert len(lines) == 2 + len(checks)
    paths = [c["detail"].rsplit(" at ", 1)[1] for c in checks if c["name"] == "disk_free"]
    assert paths and all(len(path) > 20 for path in paths)
    for path in paths:  # never wrapped: each path whole, at the end of its line
        assert sum(line.startswith("OK") and " disk_free " in line and line.endswith(f" at {path}")
                   for line in lines) >= 1, path


def test_check_as_a_monitoring_plugin(local_lab):
    config = str(local_lab.spec.config_path)
    result = dcctl("check", "-o", "nagios", config=config, check=False)
    checks = json.loads(dcctl("check", "-o", "json", config=config, check=False).stdout)["services"][0]["checks"]
    assert result.returncode == 3 and "Traceback" not in result.stderr
    first, *details = result.stdout.splitlines()
    summary, perfdata = first.split(" | ")
    assert summary.startswith("DCCTL UNKNOWN: 2 UNKNOWN of ") and "drill_age" in summary
    items = perfdata.split(" ")
    assert all(PERF_ITEM.match(item) for item in items), items
    assert any(item.startswith("'massar_replication_lag_bytes_backup'=") and ";16777216;268435456;" in item
               for item in items)
    assert sum(item.startswith("'massar_disk_free_") for item in items) == sum(c["name"] == "disk_free"
                                                                               for c in checks)
    assert len(details) == len(checks) and details[0].startswith("[UNKNOWN] massar ")
    same = dcctl("-o", "nagios", "check", config=config, check=False)  # the global option works too
    assert same.returncode == 3 and same.stdout.startswith("DCCTL UNKNOWN:")


def test_check_as_tsv_for_scripts(local_lab):
    config = str(local_lab.spec.config_path)
    result = dcctl("check", "-o", "tsv", config=config, check=False)
    checks = json.loads(dcctl("check", "-o", "json", config=config, check=False).stdout)["services"][0]["checks"]
    assert result.returncode == 3
    header, *rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert header == ["service", "check", "site", "status", "value", "threshold", "detail"]
    assert all(len(row) == 7 for row in rows)
    assert sorted((r[1], r[2], r[3]) for r in rows) == sorted((c["name"], c["site"] or "", c["status"])
                                                               for c in checks)
