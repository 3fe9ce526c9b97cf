"""argv builders for PostgreSQL's own tools (pure): the transports run them as lists."""
from __future__ import annotations

import posixpath


def _bin(bin_dir: str, tool: str) -> str:
    return posixpath.join(bin_dir, tool)


def pg_ctl_start(bin_dir: str, data_dir: str, log_file: str, timeout: int = 60) -> list[str]:
    return [_bin(bin_dir, "pg_ctl"), "start", "-D", data_dir, "-l", log_file, "-w", "-t", str(timeout)]


def pg_ctl_stop(bin_dir: str, data_dir: str, mode: str = "fast", timeout: int = 60) -> list[str]:
    return [_bin(bin_dir, "pg_ctl"), "stop", "-D", data_dir, "-m", mode, "-w", "-t", str(timeout)]


def pg_ctl_status(bin_dir: str, data_dir: str) -> list[str]:
    return [_bin(bin_dir, "pg_ctl"), "status", "-D", data_dir]


def initdb(bin_dir: str, data_dir: str, superuser: str, pwfile: str) -> list[str]:
    return [_bin(bin_dir, "initdb"), "-D", data_dir, "-U", superuser, f"--pwfile={pwfile}", "--data-checksums",
            "--auth-local=peer", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"]


def pg_basebackup(bin_dir: str, data_dir: str, conninfo: str, slot: str | None) -> list[str]:
    argv = [_bin(bin_dir, "pg_basebackup"), "-D", data_dir, "-d", conninfo, "-X", "stream",
            "--checkpoint=fast", "--no-password", "--progress"]
    if slot:
        argv += ["-S", slot]
    return argv


def conninfo(**params: str | int | None) -> str:
    """libpq key=value string, values quoted as libpq wants.

    >>> conninfo(host="127.0.0.1", port=5432, user="replicator", passfile="/a b/pgpass", password=None)
    "host=127.0.0.1 port=5432 user=replicator passfile='/a b/pgpass'"
    """
    parts = []
    for name, value in params.items():
        if value is None:
            continue
        text = str(value)
        if not text or any(c in text for c in " '\\"):
            text = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
        parts.append(f"{name}={text}")
    return " ".join(parts)
