"""The shipped systemd units, rendered by `dcctl install-units`, verify cleanly and the agent's is hardened.

dcctl runs here in a bare environment (PATH without any dcctl, as on a fresh clone and under
.ci/run), so a dcctl that the caller's shell happens to have cannot decide what ExecStart= holds."""
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

from tests.unit.test_config import GOOD

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")

CHECKOUT = Path(__file__).parents[2]
BARE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/nonexistent"}


def install_units(python: str, config: Path, unit_dir: Path, *extra: str, cwd: Path = CHECKOUT):
    return subprocess.run([python, "-m", "dcctl", "-c", str(config), "install-units", "--site", "rabat",
                           "--unit-dir", str(unit_dir), *extra], capture_output=True, text=True, timeout=60,
                          env=BARE_ENV, cwd=cwd)


def exec_start(unit: Path) -> list[str]:
    return unit.read_text().split("ExecStart=", 1)[1].splitlines()[0].split()


@pytest.fixture
def units(tmp_path):
    config = tmp_path / "dcctl.yaml"
    config.write_text(yaml.safe_dump(GOOD))
    unit_dir = tmp_path / "units"
    result = install_units(sys.executable, config, unit_dir)
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
    executable = exec_start(units / "dcctl-agent.service")[0]
    assert Path(executable).is_absolute() and os.access(executable, os.X_OK)


def test_exec_start_is_the_console_script_beside_the_interpreter(units):
    for name in ("dcctl-agent.service", "dcctl-check.service", "dcctl-drill.service"):
        assert exec_start(units / name)[0] == str(Path(sys.executable).parent / "dcctl")


def test_without_a_console_script_exec_start_runs_the_interpreter_with_m(tmp_path):
    """An interpreter with no dcctl script beside it (dcctl importable through a .pth file):
    ExecStart= is that interpreter with -m dcctl, and the units still verify."""
    env_dir = tmp_path / "bare-venv"
    venv.create(env_dir, with_pip=False)
    site_packages = next(env_dir.glob("lib/python*/site-packages"))
    ours = next(Path(sys.executable).parent.parent.glob("lib/python*/site-packages"))
    (site_packages / "dcctl-checkout.pth").write_text(f"{CHECKOUT}\n{ours}\n")
    python = env_dir / "bin" / "python"
    assert not (env_dir / "bin" / "dcctl").exists()
    config = tmp_path / "dcctl.yaml"
    config.write_text(yaml.safe_dump(GOOD))
    result = install_units(str(python), config, tmp_path / "units", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert exec_start(tmp_path / "units" / "dcctl-agent.service")[:3] == [str(python), "-m", "dcctl"]
    unit_files = sorted(map(str, (tmp_path / "units").iterdir()))
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", *unit_files], capture_output=True, text=True,
                            timeout=120)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr


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
                            timeout=60, env=BARE_ENV, cwd=CHECKOUT)
    assert result.returncode == 0 and "agent run --site backup" in result.stdout
    assert not (tmp_path / "u").exists()
