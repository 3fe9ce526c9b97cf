"""dcctl agents as real processes (`python -m dcctl agent run`), for the lab's tests and
benchmarks: started with a config and a site, stopped by the PID they were started with."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from dcctl.config import load_config
from dcctl.errors import LabError
from dcctl.lab import procs


class AgentProcess:
    def __init__(self, config_path: str | Path, site: str, log_path: str | Path, service: str | None = None,
                 python: str = sys.executable, prefix: list[str] | None = None):
        """prefix: what the agent's command runs under, e.g. `ip netns exec NS` for a netns lab."""
        self.config_path = str(config_path)
        self.prefix = list(prefix or [])
        self.site = site
        self.service = service
        self.log_path = Path(log_path)
        self.python = python
        self.proc: subprocess.Popen | None = None
        config = load_config(self.config_path)
        _, svc = config.service(service) if service else next(iter(config.services.items()))
        settings = svc.sites[site].agent
        self.listen = settings.listen
        self.tls = bool(settings.tls_cert_file)

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]") or "127.0.0.1"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.listen}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def argv(self) -> list[str]:
        argv = [*self.prefix, self.python, "-m", "dcctl", "-c", self.config_path, "agent", "run", "--site", self.site]
        return argv + (["--service", self.service] if self.service else [])

    def start(self, timeout: float = 30) -> "AgentProcess":
        if self.running():
            return self
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=log, start_new_session=True)

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise LabError(f"the agent for site {self.site} exited with code {self.proc.returncode}: "
                               f"{self.log_tail()}")
            return procs.port_open(self.port, self.host)

        if not procs.wait_until(listening, timeout, interval=0.05):
            self.stop()
            raise LabError(f"the agent for site {self.site} did not listen on {self.listen} within {timeout:g} s",
                           hint=f"see {self.log_path}")
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        """Signal the process we started (by its PID) and wait; its exit code, None if none was running."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 5) -> str:
        return " | ".join(self.log_text().strip().splitlines()[-lines:])
