"""A real Prometheus server for the lab's tests and benchmarks: generated config, its own data
directory, 127.0.0.1 only, stopped by the PID it was started with."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from dcctl.errors import LabError
from dcctl.lab import procs

PROMETHEUS = os.environ.get("DCCTL_PROMETHEUS", "/usr/bin/prometheus")
PROMTOOL = os.environ.get("DCCTL_PROMTOOL", "/usr/bin/promtool")


def agent_job(name: str, targets: list[str], *, scheme: str = "http", ca_file: str | None = None,
              username: str | None = None, password_file: str | None = None) -> dict[str, Any]:
    """A scrape job for dcctl agents, as in config/prometheus/scrape.example.yml."""
    job: dict[str, Any] = {"job_name": name, "scheme": scheme, "static_configs": [{"targets": targets}]}
    if ca_file:
        job["tls_config"] = {"ca_file": ca_file}
    if username:
        job["basic_auth"] = {"username": username, "password_file": password_file}
    return job


class PrometheusServer:
    def __init__(self, directory: Path, port: int, jobs: list[dict[str, Any]], rule_files: list[str] = (),
                 interval: str = "1s"):
        self.directory = Path(directory)
        self.port = port
        self.jobs = jobs
        self.rule_files = [str(Path(f).absolute()) for f in rule_files]
        self.interval = interval
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "prometheus.log"

    def config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": self.interval, "scrape_timeout": self.interval,
                       "evaluation_interval": self.interval},
            "rule_files": self.rule_files,
            "scrape_configs": self.jobs,
        }

    def start(self, timeout: float = 60) -> "PrometheusServer":
        if not Path(PROMETHEUS).exists():
            raise LabError(f"{PROMETHEUS} not found", hint="run scripts/setup.sh (apt-get install prometheus)")
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        argv = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        if not procs.wait_until(self._ready, timeout, interval=0.1):
            self.stop()
            raise LabError(f"prometheus did not become ready within {timeout:g} s",
                           hint=f"see {self.log_path}: {self.log_tail()}")
        return self

    def _ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise LabError(f"prometheus exited with code {self.proc.returncode if self.proc else '?'}: "
                           f"{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as reply:
            body = json.load(reply)
        if body.get("status") != "success":
            raise LabError(f"prometheus API {path} failed: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query: [{"metric": {labels}, "value": [time, "text"]}, ...]."""
        return self.api("query", query=expr)["result"]

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts: [{"labels": {...}, "state": "pending"|"firing", ...}, ...]."""
        return self.api("alerts")["alerts"]

    def targets(self) -> list[dict[str, Any]]:
        return self.api("targets")["activeTargets"]

    def stop(self, timeout: float = 15) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # the Popen we started: its PID, never a name
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "PrometheusServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
