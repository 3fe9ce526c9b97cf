"""Real agents and a real Prometheus on the lab, for tests/integration/test_agent.py.

Everything listens on 127.0.0.1 and is stopped by the PID it was started with.
"""
import base64
import random
import shutil
import ssl
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from dcctl.lab import procs
from dcctl.lab.agents import AgentProcess
from dcctl.lab.prometheus import PrometheusServer, agent_job

REPO = Path(__file__).parents[2]
RULES = REPO / "config" / "prometheus" / "dcctl-alerts.yml"
INTERVAL = 1.0  # seconds between the agents' collections in tests (Prometheus scrapes every 1 s too)


def free_port() -> int:
    for _ in range(200):
        port = random.randrange(20000, 60000)
        if procs.port_free(port):
            return port
    raise RuntimeError("no free port on 127.0.0.1")


def write_config(lab, name: str, change=lambda data: None) -> str:
    """A copy of the lab's config with the agents collecting every INTERVAL s, edited by `change(data)`."""
    data = yaml.safe_load(lab.spec.config_path.read_text())
    for site in data["services"]["massar"]["sites"].values():
        site["agent"]["interval"] = INTERVAL
    change(data)
    path = lab.spec.root / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def site_of(data: dict, name: str) -> dict:
    return data["services"]["massar"]["sites"][name]


def scrape(url: str, *, user: str | None = None, password: str | None = None, cafile: str | None = None,
           timeout: float = 10) -> tuple[int, str]:
    """GET url; (HTTP status, body). Errors with a status (401, 503) are returned, not raised."""
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of the one series of `name` whose labels include `labels`, from exposition text."""
    found = []
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            found.append(float(value))
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


@pytest.fixture(scope="module")
def scratch():
    path = Path(tempfile.mkdtemp(prefix="dcctl-agent-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def agents(lab, scratch):
    """Both sites' agents, at the lab's agent ports, collecting every second."""
    config = write_config(lab, "dcctl-agents.yaml")
    running = {site: AgentProcess(config, site, scratch / f"agent-{site}-{lab.spec.transport}.log")
               for site in ("rabat", "backup")}
    try:
        for agent in running.values():
            agent.start()
        yield running
    finally:
        for agent in running.values():
            agent.stop()


@pytest.fixture(scope="module")
def prometheus(agents, scratch, lab):
    targets = [agent.listen for agent in agents.values()]
    server = PrometheusServer(scratch / f"prometheus-{lab.spec.transport}", free_port(),
                              [agent_job("dcctl", targets)], rule_files=[str(RULES)], interval="1s")
    with server:
        yield server
