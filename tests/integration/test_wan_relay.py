"""WAN latency on one machine: the delaying relay (dcctl.lab.relay) keeps every byte, and a switchover
whose replication crosses relays of 10 ms round trip loses no acknowledged commit.

Ports are picked as conftest picks them for labs (free_port_block), or taken from
$DCCTL_TEST_BASE_PORT when a run must stay inside a given range of ports."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import socket
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dcctl.lab.lab import Lab, lab_down
from dcctl.lab.procs import free_port_block
from dcctl.lab.relay import Relay, RelaySettings, WanLab
from dcctl.lab.writer import Writer, missing_ids
from tests.integration.conftest import dcctl

pytestmark = pytest.mark.lab

CONNECTIONS = 20
ONE_WAY_DELAY = 0.005


def base_port(count: int = 8) -> int:
    chosen = os.environ.get("DCCTL_TEST_BASE_PORT")
    return int(chosen) if chosen else free_port_block(count)


class EchoServer:
    """Sends back every byte it receives on 127.0.0.1:port, then half-closes after the client did."""

    def __init__(self, port: int):
        self.listener = socket.create_server(("127.0.0.1", port), backlog=CONNECTIONS * 2)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() that close() alone would leave listening
        self.listener.close()


def round_trip(connect, payload: bytes, seed: int) -> tuple[int, str]:
    """Send payload in pieces of random sizes, half-close, read everything back: (length, sha256)."""
    pieces = random.Random(seed)
    with connect() as sock:
        def send() -> None:
            at = 0
            while at < len(payload):
                size = pieces.randint(1, 256 * 1024)
                sock.sendall(payload[at:at + size])
                at += size
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        digest, length = hashlib.sha256(), 0
        while data := sock.recv(65536):
            digest.update(data)
            length += len(data)
        sender.join()
    return length, digest.hexdigest()


@pytest.mark.parametrize("listener", ["tcp", "unix"])
def test_the_relay_carries_bytes_intact_both_ways_on_many_connections(listener, tmp_path):
    ports = base_port(2)
    echo = EchoServer(ports)
    sock_path = tmp_path / "relay.sock"
    settings = (RelaySettings(target=ports, delay=ONE_WAY_DELAY, listen_port=ports + 1) if listener == "tcp"
                else RelaySettings(target=ports, delay=ONE_WAY_DELAY, listen_unix=str(sock_path)))

    def connect() -> socket.socket:
        if listener == "tcp":
            return socket.create_connection(("127.0.0.1", ports + 1), timeout=60)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(60)
        sock.connect(str(sock_path))
        return sock

    rng = random.Random(16)
    payloads = [rng.randbytes(rng.choice([1, 100, 70_000, 1_000_000, 3_000_000])) for _ in range(CONNECTIONS)]
    try:
        with Relay(settings, log=tmp_path / "relay.log"):
            with ThreadPoolExecutor(max_workers=CONNECTIONS) as pool:
                results = list(pool.map(lambda i: round_trip(connect, payloads[i], i), range(CONNECTIONS)))
    finally:
        echo.close()
    assert results == [(len(p), hashlib.sha256(p).hexdigest()) for p in payloads]


@pytest.fixture
def wan_lab():
    """A lab (local transport) whose nodes sit behind relays of 10 ms round trip (dcctl.lab.relay.WanLab)."""
    root = Path(tempfile.mkdtemp(prefix="wan-lab-", dir="/tmp"))
    root.chmod(0o755)
    try:
        lab = Lab.up(root / "lab", base_port=base_port(), transport="local")
        with WanLab(lab, 0.010, root / "wan") as wan:
            yield lab, wan
    finally:
        lab_down(root / "lab")
        shutil.rmtree(root, ignore_errors=True)


def switchover(wan: WanLab) -> dict:
    report = json.loads(dcctl("--yes", "-o", "json", "switchover", config=str(wan.config_path)).stdout)
    assert report["outcome"] == "success", report
    return report


def test_a_switchover_across_relays_loses_no_acknowledged_commit(wan_lab):
    lab, wan = wan_lab
    assert wan.streams_through_relay("backup", "massar")  # the lab's standby was repointed through the relay
    with Writer(lab.spec.app_dsn(), rate=200) as writer:
        writer.wait_for_commits(50)
        for expected in (("rabat", "backup"), ("backup", "rabat")):
            report = switchover(wan)
            assert (report["old_primary"], report["new_primary"]) == expected
            assert wan.streams_through_relay(report["old_primary"], "massar")
            writer.wait_for_commits(50)
    assert writer.stats.acknowledged
    assert missing_ids(lab.spec.app_dsn(), writer.stats.acknowledged) == []
