"""dcctl as an operator installs it, not as the checkout runs it: the wheel in a fresh venv, and the
offline bundle (`make dist`) installed with no package index, each run from a directory outside
the checkout, by absolute path, with a PATH that holds neither the checkout nor its .venv.

Slow-ish (a wheel build, a venv and a lab each): one wheel and one bundle per module; select them
with `-m packaging`."""
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dcctl import __version__
from dcctl.lab.procs import free_port_block

pytestmark = [pytest.mark.packaging, pytest.mark.lab]

CHECKOUT = Path(__file__).parents[2]
RUN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNREACHABLE_INDEX = "http://127.0.0.1:9/"  # discard port: nothing answers


def open_dir(prefix: str) -> Path:
    """Under /tmp and traversable by all: the lab's PostgreSQL and agents run as another user."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def operator_env(**extra: str) -> dict[str, str]:
    env = {"PATH": RUN_PATH, "HOME": os.environ.get("HOME", "/root"), **extra}
    if os.environ.get("DCCTL_PG_BIN"):
        env["DCCTL_PG_BIN"] = os.environ["DCCTL_PG_BIN"]
    return env


def run(dcctl: Path, *args: str, cwd: Path, config: str | None = None, check: bool = True, timeout: float = 300):
    env = operator_env(**({"DCCTL_CONFIG": config} if config else {}))
    result = subprocess.run([str(dcctl), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    if check:
        assert result.returncode == 0, f"dcctl {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
    return result


def build_wheel(out: Path) -> Path:
    result = subprocess.run(["bash", str(CHECKOUT / "scripts" / "build_wheel.sh"), str(out)], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.split()[-1])


@pytest.fixture(scope="module")
def outside():
    """The operator's working directory: anywhere but the checkout."""
    path = open_dir("dcctl-outside-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def wheel(outside) -> Path:
    return build_wheel(outside / "wheelhouse")


@pytest.fixture(scope="module")
def wheel_venv(wheel, outside) -> Path:
    """The wheel and its dependencies (from the package index) in a fresh venv."""
    venv = outside / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                              "--disable-pip-version-check", str(wheel)], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr
    return venv


@pytest.fixture
def lab_dir(outside):
    """A lab directory; whatever a test leaves running is stopped by the checkout's own lab code."""
    from dcctl.lab.lab import lab_down

    directory = Path(tempfile.mkdtemp(prefix="lab-", dir=outside))
    directory.rmdir()
    yield directory
    lab_down(directory)


def lab_up(dcctl: Path, lab_dir: Path, cwd: Path) -> str:
    result = run(dcctl, "lab", "up", "--dir", str(lab_dir), "--base-port", str(free_port_block()), cwd=cwd)
    exported = next(line for line in result.stdout.splitlines() if line.startswith("export DCCTL_CONFIG="))
    return shlex.split(exported.split("=", 1)[1])[0]


def roles(dcctl: Path, config: str, cwd: Path) -> dict[str, str]:
    report = json.loads(run(dcctl, "status", "-o", "json", config=config, cwd=cwd).stdout)["services"][0]
    return {s["site"]: s["role"] for s in report["sites"]}


def test_the_wheel_holds_the_playbooks_and_unit_templates(wheel):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for operation in ("switchover", "failover", "rejoin", "drill"):
        assert f"dcctl/data/playbooks/{operation}.yaml" in names
    for unit in ("dcctl-agent.service", "dcctl-drill.service", "dcctl-drill.timer", "dcctl-check.service",
                 "dcctl-check.timer"):
        assert f"dcctl/data/systemd/{unit}" in names
    assert f"dcctl-{__version__}.dist-info/licenses/LICENSE" in names


def test_the_installed_wheel_runs_the_operations_from_outside_the_checkout(wheel_venv, outside, lab_dir):
    dcctl = wheel_venv / "bin" / "dcctl"
    version = run(dcctl, "--version", cwd=outside).stdout.splitlines()
    assert version[0] == f"dcctl {__version__}" and version[1].endswith(f"({wheel_venv}/bin/python)")

    config = lab_up(dcctl, lab_dir, outside)
    assert roles(dcctl, config, outside) == {"rabat": "primary", "backup": "standby"}
    plan = run(dcctl, "switchover", "--dry-run", config=config, cwd=outside)
    assert "promote" in plan.stdout
    switched = json.loads(run(dcctl, "--yes", "-o", "json", "switchover", config=config, cwd=outside).stdout)
    assert switched["outcome"] == "success" and switched["new_primary"] == "backup"
    assert roles(dcctl, config, outside)["backup"] == "primary"
    assert "promote_copy" in run(dcctl, "drill", "--dry-run", config=config, cwd=outside).stdout
    drill = json.loads(run(dcctl, "--yes", "-o", "json", "drill", config=config, cwd=outside).stdout)
    assert drill["outcome"] == "success"
    run(dcctl, "lab", "down", "--dir", str(lab_dir), cwd=outside)
    assert not lab_dir.exists()


def test_the_installed_wheel_writes_units_that_run_its_own_dcctl(wheel_venv, outside, tmp_path):
    from tests.unit.test_config import GOOD
    import yaml

    dcctl = wheel_venv / "bin" / "dcctl"
    config = tmp_path / "dcctl.yaml"
    config.write_text(yaml.safe_dump(GOOD))
    unit_dir = tmp_path / "units"
    printed = run(dcctl, "install-units", "--site", "rabat", "--unit-dir", str(unit_dir), "--dry-run",
                  config=str(config), cwd=outside).stdout
    assert f"ExecStart={dcctl} -c {config} agent run --site rabat" in printed and not unit_dir.exists()
    run(dcctl, "install-units", "--site", "rabat", "--unit-dir", str(unit_dir), config=str(config), cwd=outside)
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", *sorted(map(str, unit_dir.iterdir()))],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr


@pytest.fixture(scope="module")
def bundle(outside) -> Path:
    """`make dist`'s script (make dist itself first runs scripts/setup.sh, which the suite already needs)."""
    result = subprocess.run(["bash", str(CHECKOUT / "scripts" / "dist.sh")], capture_output=True, text=True,
                            timeout=900,
                            env={**os.environ, "PYTHON": sys.executable, "DIST_DIR": str(outside / "dist")})
    assert result.returncode == 0, result.stderr
    tarball = Path(result.stdout.split()[-1])
    assert tarball.name == f"dcctl-{__version__}-offline.tar.gz"
    return tarball


def unpack(bundle: Path, into: Path) -> None:
    """As an operator does, with tar (Debian 12's Python 3.11.2 has no extraction filters)."""
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-xzf", str(bundle), "-C", str(into)], check=True, timeout=120)


def test_the_offline_bundle_installs_with_no_index_and_runs_the_lab(bundle, outside, lab_dir):
    unpack(bundle, outside / "unpacked")
    unpacked = outside / "unpacked" / f"dcctl-{__version__}-offline"
    wheels = sorted(p.name for p in (unpacked / "wheels").iterdir())
    assert f"dcctl-{__version__}-py3-none-any.whl" in wheels and any(w.startswith("psycopg_binary-") for w in wheels)
    prefix, link = outside / "opt-dcctl", outside / "usr-local-bin" / "dcctl"
    install = subprocess.run(["sh", str(unpacked / "install.sh")], cwd=outside, capture_output=True, text=True,
                             timeout=600, env=operator_env(DCCTL_PREFIX=str(prefix), DCCTL_LINK=str(link),
                                                           PIP_INDEX_URL=UNREACHABLE_INDEX))
    assert install.returncode == 0, install.stderr
    assert "dcctl install-units" in install.stdout.splitlines()[-1] + install.stdout
    assert link.is_symlink() and link.resolve() == (prefix / "bin" / "dcctl").resolve()

    assert run(link, "--version", cwd=outside).stdout.splitlines()[0] == f"dcctl {__version__}"
    config = lab_up(link, lab_dir, outside)
    assert roles(link, config, outside) == {"rabat": "primary", "backup": "standby"}
    run(link, "lab", "down", "--dir", str(lab_dir), cwd=outside)
    assert not lab_dir.exists()


def test_a_damaged_bundle_is_refused_before_anything_is_installed(bundle, outside, tmp_path):
    unpack(bundle, tmp_path)
    unpacked = tmp_path / f"dcctl-{__version__}-offline"
    wheel = next((unpacked / "wheels").glob("dcctl-*.whl"))
    wheel.write_bytes(wheel.read_bytes()[:-100])
    prefix = tmp_path / "opt-dcctl"
    install = subprocess.run(["sh", str(unpacked / "install.sh")], cwd=outside, capture_output=True, text=True,
                             timeout=600, env=operator_env(DCCTL_PREFIX=str(prefix), DCCTL_LINK=str(tmp_path / "l"),
                                                           PIP_INDEX_URL=UNREACHABLE_INDEX))
    assert install.returncode != 0 and "damaged" in install.stderr and not prefix.exists()
