"""A delaying TCP relay: WAN latency between the lab's sites, which share one machine.

The kernel here has no `netem` (tc qdisc), so a lab that needs a few milliseconds of round trip
between its datacenters puts one of these in front of a site's PostgreSQL: everything that
crosses between the sites connects to the relay, which forwards to 127.0.0.1:TARGET and holds
every chunk, in each direction, for the one-way delay (half the round trip) before writing it on.

- Order and integrity: each direction is one FIFO of (due time, bytes). The delay is the same for
  every chunk, so arrival order is due order and the FIFO is the timer queue: a reader that never
  sleeps appends, a writer waits for the head to fall due and writes it. Bytes in flight, not the
  delay, bound throughput (up to MAX_QUEUED_CHUNKS reads of CHUNK bytes per direction).
- Half-close: an EOF is queued like data and becomes a write_eof() on the other side when due.
  A reset on either side aborts both.
- Connection set-up: a real client waits one round trip for TCP's handshake before its first byte
  leaves; here it connects locally at once, so its first bytes are held one extra round trip.
- Listening: on 127.0.0.1:PORT, or on a unix socket (--listen-unix PATH). The lab's configs give a
  node one address, used by dcctl and by the peer site's primary_conninfo alike, and dcctl writes
  that port as the node's own `port` when it makes it a standby: a relay on another 127.0.0.1
  port would be written there too. A unix socket DIR/.s.PGSQL.N keeps the node's port number N
  (libpq's host=DIR port=N). On a unix socket the kernel names the client's uid (SO_PEERCRED):
  --undelayed-uid says whose connections come from the relay's own side of the WAN (the
  operator's, at the site it sits in) and pass without delay.
- Tracing (--trace FILE): one JSON line per connection opened and per round trip, a server chunk
  answering client chunks (timed when the client gets it): the round trips a client waited for,
  so that a benchmark can tell which step of an operation spent them. A message that gets no
  answer (a Terminate) is not one.

Runs as a process of its own, so that it shares no interpreter lock with a benchmark:

    python -m dcctl.lab.relay --listen 28410 --target 28400 --delay-ms 10
    python -m dcctl.lab.relay --listen-unix /tmp/x/.s.PGSQL.28400 --target 28400 --delay-ms 10 --undelayed-uid 0

It prints one line, "relay ready ...", once it accepts connections, and exits on SIGTERM or SIGINT.
`Relay` starts and stops one from Python, by PID.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CHUNK = 64 * 1024
MAX_QUEUED_CHUNKS = 64
READY = "relay ready"
EOF = b""  # queued for a direction whose sender half-closed


@dataclass(frozen=True)
class RelaySettings:
    target: int
    delay: float  # seconds, one way
    listen_port: int | None = None
    listen_unix: str | None = None
    undelayed_uid: int | None = None
    trace: str | None = None  # file of JSON lines: connections opened, round trips

    def describe(self) -> str:
        where = self.listen_unix or f"127.0.0.1:{self.listen_port}"
        return f"{where} -> 127.0.0.1:{self.target}, {self.delay * 1000:g} ms each way"


# ---- the relay itself (runs in its own process) ----------------------------------------------------

class ConnectionTrace:
    """Counts the round trips of one connection: server chunks that answer client chunks."""

    _ids = itertools.count(1)

    def __init__(self, out, uid: int | None, delay: float):
        self.out = out
        self.conn = next(self._ids)
        self.uid = uid
        self.delay = delay
        self.client_spoke_last = False
        self.emit("open", time.time())

    def emit(self, event: str, at: float) -> None:
        if self.out is not None:
            self.out.write(json.dumps({"t": at, "conn": self.conn, "uid": self.uid, "event": event}) + "\n")

    def saw(self, from_client: bool) -> None:
        if self.client_spoke_last and not from_client:
            self.emit("round_trip", time.time() + self.delay)
        self.client_spoke_last = from_client


async def carry(source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay: float, not_before: float,
                trace: ConnectionTrace, from_client: bool) -> None:
    """Copy source to sink, each chunk written `delay` after it was read (and not before
    `not_before` + delay: the handshake round trip of a new connection). Ends after the EOF."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(MAX_QUEUED_CHUNKS)

    async def read() -> None:
        while True:
            chunk = await source.read(CHUNK)
            if chunk:
                trace.saw(from_client)
            await queue.put((max(loop.time(), not_before) + delay, chunk))
            if chunk == EOF:
                return

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if chunk == EOF:
                if sink.can_write_eof():
                    sink.write_eof()
                return
            sink.write(chunk)
            await sink.drain()

    tasks = {asyncio.ensure_future(read()), asyncio.ensure_future(deliver())}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # a reset while reading or writing ends the direction with it
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


def peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
    return uid


def delay_for(settings: RelaySettings, uid: int | None) -> float:
    if settings.undelayed_uid is not None and uid == settings.undelayed_uid:
        return 0.0
    return settings.delay


async def relay_connection(settings: RelaySettings, trace_out, client_in: asyncio.StreamReader,
                           client_out: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    uid = peer_uid(client_out)
    delay = delay_for(settings, uid)
    trace = ConnectionTrace(trace_out, uid, delay)
    handshake_done = loop.time() + 2 * delay
    try:
        server_in, server_out = await asyncio.open_connection("127.0.0.1", settings.target)
    except OSError:
        client_out.transport.abort()
        return
    upstream = asyncio.ensure_future(carry(client_in, server_out, delay, handshake_done, trace, True))
    downstream = asyncio.ensure_future(carry(server_in, client_out, delay, 0.0, trace, False))
    try:
        await asyncio.gather(upstream, downstream)
    except (OSError, asyncio.IncompleteReadError):
        # A reset on one side: the other side sees one too, not a clean end it could mistake for success.
        client_out.transport.abort()
        server_out.transport.abort()
    finally:
        upstream.cancel()
        downstream.cancel()
        for writer in (client_out, server_out):
            writer.close()


async def serve(settings: RelaySettings) -> None:
    trace_out = open(settings.trace, "a", buffering=1) if settings.trace else None

    def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        return relay_connection(settings, trace_out, reader, writer)

    if settings.listen_unix:
        Path(settings.listen_unix).unlink(missing_ok=True)
        server = await asyncio.start_unix_server(handle, settings.listen_unix, backlog=128)
        os.chmod(settings.listen_unix, 0o777)  # the other site's PostgreSQL runs as another user
    else:
        server = await asyncio.start_server(handle, "127.0.0.1", settings.listen_port, reuse_address=True,
                                            backlog=128)
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopped.set)
    print(f"{READY}: {settings.describe()}", flush=True)
    async with server:
        await stopped.wait()
    if settings.listen_unix:
        Path(settings.listen_unix).unlink(missing_ok=True)
    if trace_out is not None:
        trace_out.close()


def parse_args(argv: Sequence[str] | None) -> RelaySettings:
    parser = argparse.ArgumentParser(prog="python -m dcctl.lab.relay", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen", type=int, metavar="PORT", help="listen on 127.0.0.1:PORT")
    where.add_argument("--listen-unix", metavar="PATH", help="listen on a unix socket at PATH")
    parser.add_argument("--target", type=int, required=True, metavar="PORT", help="forward to 127.0.0.1:PORT")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay in ms (half the round trip)")
    parser.add_argument("--undelayed-uid", type=int, metavar="UID",
                        help="unix socket only: connections from this uid pass without delay")
    parser.add_argument("--trace", metavar="FILE", help="append a JSON line per connection and per round trip to FILE")
    args = parser.parse_args(argv)
    if args.delay_ms < 0:
        parser.error("--delay-ms must be >= 0")
    return RelaySettings(target=args.target, delay=args.delay_ms / 1000.0, listen_port=args.listen,
                         listen_unix=args.listen_unix, undelayed_uid=args.undelayed_uid,
                         trace=args.trace)


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(serve(parse_args(argv)))


# ---- starting and stopping one from Python ---------------------------------------------------------

class Relay:
    """A relay process: `with Relay(settings):` or start()/stop(). Stopped by its own PID."""

    START_TIMEOUT = 10.0

    def __init__(self, settings: RelaySettings, log: Path | None = None):
        self.settings = settings
        self.log = log
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def __enter__(self) -> "Relay":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def argv(self) -> list[str]:
        s = self.settings
        where = ["--listen-unix", s.listen_unix] if s.listen_unix else ["--listen", str(s.listen_port)]
        uid = ["--undelayed-uid", str(s.undelayed_uid)] if s.undelayed_uid is not None else []
        trace = ["--trace", s.trace] if s.trace else []
        return [sys.executable, "-m", "dcctl.lab.relay", *where, "--target", str(s.target),
                "--delay-ms", repr(s.delay * 1000), *uid, *trace]

    def start(self) -> None:
        with open(self.log or os.devnull, "ab") as stderr:
            self._proc = subprocess.Popen(self.argv(), stdout=subprocess.PIPE, stderr=stderr,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], self.START_TIMEOUT)
        line = self._proc.stdout.readline().decode(errors="replace") if ready else ""
        if not line.startswith(READY):
            self.stop()
            raise RuntimeError(f"relay {self.settings.describe()} did not start"
                               + (f" (see {self.log})" if self.log else ""))

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()


# ---- a lab whose sites talk through relays ---------------------------------------------------------

OPERATOR_SITE = "rabat"  # where the operator (dcctl) sits: its connections there cross no WAN


class WanLab:
    """A lab's sites behind relays with `rtt` seconds of round trip between them, and a config that
    uses them; `with WanLab(lab, rtt, directory) as wan:` then `dcctl -c wan.config_path ...`.

    Each node gets a relay on DIR/<site>/.s.PGSQL.<its port>, and the config's postgres.host of
    every node becomes DIR/<site> (ports unchanged). So everything that reaches a node through the
    config crosses a relay: dcctl's connections, and the primary_conninfo dcctl writes when it
    turns the old primary into a standby. The relays at OPERATOR_SITE let this process's uid (the
    operator) through without delay, and delay the other site's PostgreSQL (the lab user): only
    what crosses between the datacenters is delayed. The standby the lab built is repointed
    through the relays too (its primary_conninfo came from the lab's own config).

    Not through relays: the application (the lab's app_dsn), and the operator's commands at the
    sites (the local transport runs them directly, as no SSH crosses a WAN here)."""

    def __init__(self, lab, rtt: float, directory: Path):
        self.lab = lab
        self.rtt = rtt
        self.directory = Path(directory)
        self.relays: list[Relay] = []
        self.config_path = self.directory / "dcctl-wan.yaml"
        self.pgpass = self.directory / "pgpass"

    def __enter__(self) -> "WanLab":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def site_dir(self, site: str) -> Path:
        return self.directory / site

    def trace_file(self, site: str, port: int) -> Path:
        return self.directory / f"trace-{site}-{port}.jsonl"

    def trace(self, site: str, service: str = "massar") -> list[dict]:
        """What the relay in front of the node at `site` saw (see ConnectionTrace)."""
        path = self.trace_file(site, self.lab.spec.pg_port(site, service))
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]

    def start(self) -> None:
        operator_uid = os.geteuid()
        if self.lab.user.pw_uid == operator_uid:
            raise RuntimeError("the relays tell the operator from the other site's PostgreSQL by uid: run as root "
                               "(the lab's servers then run as 'postgres')")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        spec = self.lab.spec
        for site in ("rabat", "backup"):
            self.site_dir(site).mkdir(exist_ok=True)
            self.site_dir(site).chmod(0o755)
            for service in spec.service_names:
                port = spec.pg_port(site, service)
                settings = RelaySettings(target=port, delay=self.rtt / 2,
                                         listen_unix=str(self.site_dir(site) / f".s.PGSQL.{port}"),
                                         undelayed_uid=operator_uid if site == OPERATOR_SITE else None,
                                         trace=str(self.trace_file(site, port)))
                relay = Relay(settings, log=self.directory / f"relay-{site}-{port}.log")
                self.relays.append(relay)
                relay.start()
        self.write_pgpass()
        self.write_config()
        for service in spec.service_names:
            self.repoint_standby(service)

    def stop(self) -> None:
        while self.relays:
            self.relays.pop().stop()

    def write_pgpass(self) -> None:
        """The lab's passwords for any host: libpq looks a unix-socket connection up as 'localhost'."""
        lines = [f"*:{line.split(':', 1)[1]}" for line in self.lab.spec.pgpass.read_text().splitlines() if line]
        self.pgpass.write_text("\n".join(lines) + "\n")
        self.pgpass.chmod(0o600)
        os.chown(self.pgpass, self.lab.user.pw_uid, self.lab.user.pw_gid)  # read by the standby's walreceiver

    def write_config(self) -> None:
        import yaml

        data = yaml.safe_load(self.lab.spec.config_path.read_text())
        for service in data["services"].values():
            for site, site_config in service["sites"].items():
                postgres = site_config["postgres"]
                postgres.update(host=str(self.site_dir(site)), passfile=str(self.pgpass),
                                replication_passfile=str(self.pgpass))
        self.config_path.write_text(f"# {self.lab.spec.config_path} with every node behind a relay of "
                                    f"{self.rtt * 1000:g} ms round trip (dcctl.lab.relay.WanLab)\n"
                                    + yaml.safe_dump(data, sort_keys=False))

    def repoint_standby(self, service: str) -> None:
        repoint_standby(self.lab, self.config_path, service)

    def streams_through_relay(self, site: str, service: str) -> bool:
        """Whether the node at `site` streams, from the other site's relay."""
        return streams_as_configured(self.lab, self.config_path, site, service)


def repoint_standby(lab, config_path: Path, service: str) -> None:
    """Point the service's standby at its primary by the addresses in config_path, the primary_conninfo
    dcctl itself would write from that config, and wait until it streams from there."""
    from psycopg import sql

    from dcctl.lab.procs import wait_until
    from dcctl.pg import standby_conf

    nodes = _nodes(config_path, service)
    standby = next(site for site in nodes if _in_recovery(lab, site, service))
    primary = next(site for site in nodes if site != standby)
    conninfo = standby_conf.primary_conninfo(nodes[primary], standby, nodes[standby])
    with lab.connect(standby, service=service) as conn:
        conn.execute(sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(conninfo)))
        conn.execute("SELECT pg_catalog.pg_reload_conf()")
    if not wait_until(lambda: streams_as_configured(lab, config_path, standby, service), 30, interval=0.05):
        raise RuntimeError(f"the standby at {standby} did not stream from {nodes[primary].host}:{nodes[primary].port}")


def streams_as_configured(lab, config_path: Path, site: str, service: str) -> bool:
    """Whether the node at `site` streams from the other node's address in config_path."""
    nodes = _nodes(config_path, service)
    primary = nodes[next(s for s in nodes if s != site)]
    with lab.connect(site, service=service) as conn:
        row = conn.execute("SELECT status, sender_host, sender_port FROM pg_catalog.pg_stat_wal_receiver").fetchone()
    return row is not None and tuple(row) == ("streaming", primary.host, primary.port)


def _nodes(config_path: Path, service: str) -> dict:
    from dcctl.config import load_config

    return {site: cfg.postgres for site, cfg in load_config(config_path).services[service].sites.items()}


def _in_recovery(lab, site: str, service: str) -> bool:
    with lab.connect(site, service=service) as conn:
        return bool(conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()[0])


if __name__ == "__main__":
    main()
