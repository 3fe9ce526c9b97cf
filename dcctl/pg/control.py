"""Start, stop and ask about a PostgreSQL node at its site, with the configured method."""
from __future__ import annotations

import posixpath

from dcctl.config.schema import PostgresConfig
from dcctl.pg import tools
from dcctl.transport.base import Completed, Transport


def log_file(node: PostgresConfig) -> str:
    if node.control.log_file:
        return node.control.log_file
    data_dir = node.data_dir.rstrip("/")
    return posixpath.join(posixpath.dirname(data_dir), posixpath.basename(data_dir) + ".log")


def _systemctl(node: PostgresConfig, verb: str) -> list[str]:
    argv = ["systemctl", verb, node.control.unit]
    return ["sudo", "-n", *argv] if node.control.use_sudo else argv


def start_argv(node: PostgresConfig) -> list[str]:
    if node.control.method == "systemd":
        return _systemctl(node, "start")
    return tools.pg_ctl_start(node.bin_dir, node.data_dir, log_file(node), timeout=int(node.control.start_timeout))


def stop_argv(node: PostgresConfig, mode: str = "fast") -> list[str]:
    if node.control.method == "systemd":
        return _systemctl(node, "stop")
    return tools.pg_ctl_stop(node.bin_dir, node.data_dir, mode=mode, timeout=int(node.control.start_timeout))


def start(transport: Transport, node: PostgresConfig) -> Completed:
    return transport.run(start_argv(node), timeout=node.control.start_timeout + 10).check(
        f"starting PostgreSQL at site {transport.site}")


def stop(transport: Transport, node: PostgresConfig, mode: str = "fast") -> Completed:
    return transport.run(stop_argv(node, mode), timeout=node.control.start_timeout + 10).check(
        f"stopping PostgreSQL at site {transport.site}")


def is_running(transport: Transport, node: PostgresConfig) -> bool:
    """pg_ctl status: rc 0 running, 3 not running, 4 no usable data directory."""
    result = transport.run(tools.pg_ctl_status(node.bin_dir, node.data_dir), timeout=30)
    return result.rc == 0
