"""The shipped systemd units, rendered by `dcctl install-units`, verify cleanly and the agent's is hardened."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.unit.test_config import GOOD

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


@pytest.fixture
def units(tmp_path):
    config = tmp_path / "dcctl.yaml"
    config.write_text(yaml.safe_dump(GOOD))
    unit_dir = tmp_path / "units"
    result = subprocess.run([sys.executable, "-m", "dcctl", "-c", str(config), "install-units", "--site", "rabat",
                             "--unit-dir", str(unit_dir)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return unit_dir


def test_install_units_writes_all_units_with_real_paths(units):
    names = sorted(p.name for p in units.iterdir())
    assert names == ["dcctl-agent.service", "dcctl-check.service", "dcctl-check.timer", "dcctl-drill.service",
                     "dcctl-drill.timer"]
    agent = (units / "dcctl-agent.service").read_text()
    assert not [line for line in agent.splitlines() if re.search(r"@[A-Z_]+@", line)]
    assert "agent run --site rabat" in agent and "User=postgres" in agent
    assert "ReadWritePaths=" in agent and "-/pg/rabat" not in agent and "-/pg" in agent
    executable = agent.split("ExecStart=", 1)[1].split()[0]
    assert Path(executable).is_absolute() and Path(executable).exists()


def test_units_verify_with_empty_stderr(units):
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *sorted(map(str, units.iterdir()))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_the_agent_unit_is_hardened(units):
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20",
                             str(units / "dcctl-agent.service")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    score = float(result.stdout.split("Overall exposure level for dcctl-agent.service:")[1].split()[0])
    assert score <= 2.0, result.stdout


def test_dry_run_prints_and_writes_nothing(tmp_path):
    config = tmp_path / "dcctl.yaml"
    config.write_text(yaml.safe_dump(GOOD))
    result = subprocess.run([sys.executable, "-m", "dcctl", "-c", str(config), "install-units", "--site", "backup",
                             "--unit-dir", str(tmp_path / "u"), "--dry-run"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "agent run --site backup" in result.stdout
    assert not (tmp_path / "u").exists()
