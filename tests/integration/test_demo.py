"""`dcctl lab demo` (make demo) tells the whole story and ends with every check OK."""
import os
import re
import subprocess
import sys

import pytest

from tests.integration.conftest import free_port_block

pytestmark = pytest.mark.lab


def test_demo_tells_the_whole_story(open_tmp):
    env = dict(os.environ, COLUMNS="250")  # one line per message, so that they can be matched
    result = subprocess.run([sys.executable, "-m", "dcctl", "lab", "demo", "--dir", str(open_tmp / "demo"),
                             "--base-port", str(free_port_block())], capture_output=True, text=True, env=env,
                            timeout=300)
    out = result.stdout
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}\n{out}"
    checks = re.findall(r"exit (\d) \((\w+)\): (\d+) of (\d+) results OK", out)
    assert checks, out
    code, status, ok, total = checks[-1]
    assert (code, status) == ("0", "OK") and ok == total, out
    arrivals = re.findall(r"documents arrived (\w+) -> (\w+): (\d+) of (\d+), identical", out)
    assert [(a, b) for a, b, _, _ in arrivals] == [("rabat", "backup"), ("backup", "rabat"), ("rabat", "backup")]
    assert all(n == m for _, _, n, m in arrivals) and int(arrivals[0][2]) >= 300, arrivals
    assert re.search(r"documents: (\d+) of \1 sampled files identical", out), "the drill compared no files"
    assert re.search(r"application: [1-9]\d* commits acknowledged, 0 lost", out), out
    assert re.search(r"agent rabat \(pid \d+\) stopped.*\n.*agent backup \(pid \d+\) stopped", out), out
    assert "demo done" in out
