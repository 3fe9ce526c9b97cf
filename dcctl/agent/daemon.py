"""The agent process: bind, start the tasks, serve until SIGTERM or SIGINT, stop cleanly."""
from __future__ import annotations

import logging
import signal
import threading
import time

from prometheus_client import generate_latest

from dcctl import __version__
from dcctl.agent import sdnotify
from dcctl.agent.auth import BasicAuth
from dcctl.agent.collector import Health, Task
from dcctl.agent.exposition import make_registry
from dcctl.agent.server import AgentApp, AgentServer, Tls, bind
from dcctl.agent.setup import AgentSetup
from dcctl.agent.tasks import build_tasks

log = logging.getLogger("dcctl.agent")
STOP_WAIT = 2.0  # seconds each task gets to finish when the agent stops


class Agent:
    def __init__(self, setup: AgentSetup, tasks: list[Task] | None = None):
        self.setup = setup
        self.tasks = build_tasks(setup) if tasks is None else tasks
        self.registry = make_registry(self.tasks)
        settings = setup.agent
        auth = (BasicAuth(settings.basic_auth_username, settings.basic_auth_password_hash)
                if settings.basic_auth_username and settings.basic_auth_password_hash else None)
        self.app = AgentApp(self.registry, self.health, auth)
        self.stop_reason: str | None = None  # set by whoever sets the stop event, logged on the way out

    def health(self) -> list[Health]:
        now = time.time()
        return [task.health(now) for task in self.tasks]

    def hung(self) -> list[str]:
        """The tasks stuck in one run (PeriodicCollector.stuck): the agent is not alive, whatever its socket says."""
        reasons = (getattr(task, "stuck", lambda: None)() for task in self.tasks)
        return [reason for reason in reasons if reason]

    def collect_once(self) -> tuple[bool, bytes]:
        """Run every task once in this thread: (all succeeded, what /metrics would serve)."""
        ok = all([task.run_once() for task in self.tasks])
        return ok, generate_latest(self.registry)

    def bind(self) -> AgentServer:
        settings = self.setup.agent
        tls = Tls(settings.tls_cert_file, settings.tls_key_file) if settings.tls_cert_file and settings.tls_key_file \
            else None
        return bind(settings.listen, self.app, tls, self.setup.config.source, self.setup.key_path)

    def serve(self, stop: threading.Event) -> None:
        server = self.bind()  # first, so that a busy port starts nothing
        for task in self.tasks:
            task.start()
        server.start()
        log.info("agent %s listening on %s (%s)", __version__, server.url, self.setup.describe())
        sdnotify.notify(f"READY=1\nSTATUS=serving {server.url}")
        watchdog = Watchdog(self, server.url, sdnotify.watchdog_interval())
        try:
            while not stop.wait(watchdog.tick()):
                pass
        finally:
            log.info("%s, stopping", self.stop_reason or "stop requested")
            sdnotify.notify("STOPPING=1")
            server.stop()
            for task in self.tasks:
                task.stop(STOP_WAIT)
            log.info("agent stopped")


class Watchdog:
    """Sends WATCHDOG=1 every `interval` seconds while no task is hung. A hung collector stops the
    pings, so systemd (WatchdogSec=) kills the agent and Restart= starts a fresh one."""

    def __init__(self, agent: Agent, url: str, interval: float | None):
        self.agent = agent
        self.url = url
        self.interval = interval
        self.last_ping = 0.0
        self.withheld: list[str] = []

    def tick(self) -> float:
        """Ping if due; the seconds to wait before the next tick."""
        if self.interval is None:
            return 0.5
        now = time.monotonic()
        if now - self.last_ping >= self.interval:
            self._ping_unless_hung()
            self.last_ping = now
        return min(0.5, self.interval)

    def _ping_unless_hung(self) -> None:
        hung = self.agent.hung()
        if hung and not self.withheld:  # once, when it starts: the reasons' durations grow at every tick
            log.error("not telling systemd that the agent is alive, so that it restarts it: %s", "; ".join(hung))
            sdnotify.notify(f"STATUS=hung: {'; '.join(hung)}")
        elif not hung and self.withheld:
            log.warning("no task is hung any more: watchdog pings resume")
            sdnotify.notify(f"STATUS=serving {self.url}")
        self.withheld = hung
        if not hung:
            sdnotify.notify("WATCHDOG=1")


def run_until_signalled(agent: Agent) -> None:
    """Serve until SIGTERM (systemd stop) or SIGINT (Ctrl-C), then stop cleanly and return."""
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        agent.stop_reason = f"{signal.Signals(signum).name} received"
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        agent.serve(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
