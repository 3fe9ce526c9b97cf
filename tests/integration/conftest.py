import json
import os
import subprocess
import sys
import time

import psycopg
import pytest

from dcctl.lab.procs import free_port_block  # noqa: F401  (shared by the scripts)
from dcctl.lab.lab import Lab, lab_down

if not os.path.exists("/usr/lib/postgresql/15/bin/initdb") and not os.environ.get("DCCTL_PG_BIN"):
    pytest.exit("PostgreSQL 15 server binaries are missing: run scripts/setup.sh", returncode=1)




def dcctl(*args: str, config: str | None = None, check: bool = True, timeout: float = 120):
    """Run the real CLI in a subprocess, as an operator would."""
    env = dict(os.environ)
    if config:
        env["DCCTL_CONFIG"] = config
    result = subprocess.run([sys.executable, "-m", "dcctl", *args], capture_output=True, text=True, env=env,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"dcctl {' '.join(args)} exited {result.returncode}:\n{result.stderr}{result.stdout}")
    return result


def status_json(config: str) -> dict:
    return json.loads(dcctl("status", "-o", "json", config=config).stdout)["services"][0]


def wait_for(predicate, timeout: float = 30, interval: float = 0.1, what: str = "condition"):
    """Poll against a deadline (tests check outcomes, never wall-clock figures)."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def make_lab(tmp_root, transport: str) -> Lab:
    directory = tmp_root / f"lab-{transport}"
    return Lab.up(directory, base_port=free_port_block(), transport=transport)


@pytest.fixture(scope="module", params=["local", "ssh"])
def lab(request, tmp_path_factory):
    """One lab per transport and test module; tests that break it restore it."""
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="dcctl-lab-", dir="/tmp"))
    root.chmod(0o755)
    lab_ = make_lab(root, request.param)
    yield lab_
    lab_down(lab_.spec.dir)
    root.rmdir()


def app_connect(lab_: Lab, site: str, dbname: str = "massar"):
    return psycopg.connect(host="127.0.0.1", port=lab_.spec.pg_port(site), dbname=dbname, user="postgres",
                           passfile=str(lab_.spec.pgpass), autocommit=True, connect_timeout=5)


def lab_fixture(transport: str):
    @pytest.fixture(scope="module")
    def fixture():
        import tempfile
        from pathlib import Path

        root = Path(tempfile.mkdtemp(prefix="dcctl-lab-", dir="/tmp"))
        root.chmod(0o755)
        lab_ = make_lab(root, transport)
        yield lab_
        lab_down(lab_.spec.dir)
        root.rmdir()

    return fixture


local_lab = lab_fixture("local")
ssh_lab = lab_fixture("ssh")


MULTI_SERVICES = 3  # massar, identity, portal: a recovery plan of two groups


@pytest.fixture(scope="module")
def multi_lab():
    """A lab of three services (one cluster per service per site), local transport, one per module."""
    import tempfile
    from pathlib import Path

    from dcctl.lab.layout import port_span

    root = Path(tempfile.mkdtemp(prefix="dcctl-multilab-", dir="/tmp"))
    root.chmod(0o755)
    lab_ = Lab.up(root / "lab", base_port=free_port_block(port_span(MULTI_SERVICES)), transport="local",
                  services=MULTI_SERVICES)
    yield lab_
    lab_down(lab_.spec.dir)
    root.rmdir()


def service_connect(lab_: Lab, service: str, site: str, dbname: str | None = None):
    """Like app_connect, for any service of a multi-service lab (its own database by default)."""
    return psycopg.connect(host="127.0.0.1", port=lab_.spec.pg_port(site, service),
                           dbname=dbname or lab_.spec.database(service), user="postgres",
                           passfile=str(lab_.spec.pgpass), autocommit=True, connect_timeout=5)


def config_variant(lab_: Lab, name: str, edit) -> str:
    """A copy of the lab's config changed by edit(data); returns its path."""
    import yaml

    data = yaml.safe_load(lab_.spec.config_path.read_text())
    edit(data)
    path = lab_.spec.root / f"dcctl-{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def check_json(config: str, *names: str) -> tuple[int, list[dict]]:
    args = ["check", "-o", "json"]
    for name in names:
        args += ["--check", name]
    result = dcctl(*args, config=config, check=False)
    assert result.returncode in (0, 1, 2, 3), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)["services"][0]["checks"]


def results_named(checks: list[dict], name: str, site: str | None = None) -> list[dict]:
    return [c for c in checks if c["name"] == name and (site is None or c["site"] == site)]
