"""systemd's watchdog on the lab: a real agent process, a fake $NOTIFY_SOCKET (a datagram socket
this test binds, as systemd does), and a collector that hangs for real (the drill records it reads
sit behind a FIFO nobody writes to, as a hung network file system would). The agent pings while it
is well, stops pinging while the collector is stuck (so systemd's WatchdogSec= restarts it) although
its HTTP port still answers, and pings again once the collector returns."""
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from dcctl.lab.agents import AgentProcess
from tests.integration.agent_fixtures import free_port, scrape, write_config
from tests.integration.conftest import local_lab, wait_for  # noqa: F401

pytestmark = pytest.mark.lab

UNIT = Path(__file__).parents[2] / "dcctl" / "data" / "systemd" / "dcctl-agent.service"
WATCHDOG_USEC = 1_000_000  # WatchdogSec=1s: a ping every 0.5 s


class FakeSystemd:
    """Receives sd_notify datagrams on a socket in `directory`, with the monotonic time of each."""

    def __init__(self, directory: Path):
        self.path = str(directory / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def pings_since(self, since: float) -> int:
        return sum(1 for at, text in list(self.messages) if at >= since and "WATCHDOG=1" in text.split("\n"))

    def said(self, prefix: str) -> list[str]:
        return [text for _at, text in list(self.messages) if text.startswith(prefix)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def systemd(monkeypatch):
    directory = Path(tempfile.mkdtemp(prefix="dcctl-sd-", dir="/tmp"))  # a socket path fits in 108 bytes
    fake = FakeSystemd(directory)
    monkeypatch.setenv("NOTIFY_SOCKET", fake.path)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)  # the agent is a child of this test, not systemd's
    yield fake
    fake.close()
    shutil.rmtree(directory)


def test_the_unit_arms_the_watchdog():
    text = UNIT.read_text()
    assert "Type=notify" in text and "WatchdogSec=30s" in text and "Restart=on-failure" in text


def test_a_hung_collector_stops_the_watchdog_pings_while_the_port_still_answers(local_lab, systemd, tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    port = free_port()

    def change(data):
        data["state_dir"] = str(state_dir)
        data["services"]["massar"]["sites"]["rabat"]["agent"]["listen"] = f"127.0.0.1:{port}"

    config = write_config(local_lab, "dcctl-watchdog.yaml", change)
    agent = AgentProcess(config, "rabat", tmp_path / "agent.log").start()
    fifo = None
    try:
        wait_for(lambda: systemd.said("READY=1"), timeout=30, what="READY=1")
        healthy_from = time.monotonic()
        wait_for(lambda: systemd.pings_since(healthy_from) >= 3, timeout=30, what="watchdog pings")

        # The collectors open every drill journal: this one blocks their open() for good.
        drill = state_dir / "operations" / "20261204T000000Z-drill-massar"
        drill.mkdir(parents=True)
        fifo = drill / "journal.jsonl"
        os.mkfifo(fifo)
        wait_for(lambda: systemd.said("STATUS=hung"), timeout=120, what="the agent to notice its hung collector")
        [status] = systemd.said("STATUS=hung")
        # both collectors read the drill records (status: for the drill_age check); the first stuck names itself
        assert "massar: one collection has run for" in status and "limit" in status
        hung_from = time.monotonic()
        time.sleep(3 * WATCHDOG_USEC / 1e6)  # three watchdog periods: systemd would have killed it by now
        assert systemd.pings_since(hung_from) == 0
        assert agent.running()
        code, body = scrape(f"http://127.0.0.1:{port}/metrics")
        assert code == 200 and "dcctl_collector_up" in body  # the port still answers: only the watchdog can tell
        assert "not telling systemd that the agent is alive" in agent.log_path.read_text()

        release(fifo)
        fifo = None
        resumed_from = time.monotonic()
        wait_for(lambda: systemd.pings_since(resumed_from) >= 2, timeout=60, what="pings after the collector returns")
    finally:
        if fifo is not None:
            release(fifo)
        agent.stop()


def release(fifo: Path) -> None:
    """Move the drill out of the collector's sight, then open the FIFO's write end and close it: the
    blocked reader gets an empty file and returns (and its next run does not find the FIFO again)."""
    moved = fifo.parent.with_name("released")
    fifo.parent.rename(moved)
    try:
        os.close(os.open(moved / fifo.name, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass  # ENXIO: no reader blocked on it
    shutil.rmtree(moved)
