"""The lab's poolers (`dcctl lab up --poolers`): one PgBouncer per site on 127.0.0.1, run as the
lab's user, in transaction pooling, in front of the first service's database.

Each pooler has its own directory (DIR/poolers/<site>/): pgbouncer.ini, which %includes the
databases.ini that dcctl rewrites at every switchover; the auth_file, generated from the lab's
passwords; its log and pidfile. The ports are picked free when the poolers are first started and
kept in DIR/poolers/poolers.json. Processes are stopped by the PID of their pidfile, checked to be
this pooler's PgBouncer first.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dcctl.errors import LabError
from dcctl.lab import procs
from dcctl.lab.layout import APP_DATABASE, APP_USER, PRIMARY_SITE, SERVICE, SITES, SUPERUSER, LabSpec
from dcctl.pooler.decide import render_databases_file

if TYPE_CHECKING:
    from dcctl.lab.lab import Lab

PGBOUNCER = "/usr/sbin/pgbouncer"
START_TIMEOUT = 20.0

POOLER_INI = """\
;; dcctl lab pooler at site {site}
%include {databases_file}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {auth_file}
admin_users = {admin}
pool_mode = transaction
max_client_conn = 200
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
server_login_retry = 1
logfile = {log}
pidfile = {pidfile}
"""


def pooler_dir(spec: LabSpec, site: str) -> Path:
    return spec.root / "poolers" / site


def state_file(spec: LabSpec) -> Path:
    return spec.root / "poolers" / "poolers.json"


def ports(spec: LabSpec) -> dict[str, int] | None:
    """The poolers' ports, or None when the lab has no poolers."""
    try:
        return json.loads(state_file(spec).read_text())
    except FileNotFoundError:
        return None


def pooler_name(site: str) -> str:
    return f"{site}-bouncer"


def databases_file(spec: LabSpec, site: str) -> Path:
    return pooler_dir(spec, site) / "databases.ini"


def pidfile(spec: LabSpec, site: str) -> Path:
    return pooler_dir(spec, site) / "pgbouncer.pid"


def ini_file(spec: LabSpec, site: str) -> Path:
    return pooler_dir(spec, site) / "pgbouncer.ini"


def app_dsn(spec: LabSpec, site: str) -> str:
    """The application's DSN through the pooler at `site`."""
    port = (ports(spec) or {})[site]
    return (f"host=127.0.0.1 port={port} dbname={APP_DATABASE} user={APP_USER} passfile={spec.pgpass} "
            f"connect_timeout=5")


def config_entries(spec: LabSpec) -> list[dict[str, Any]]:
    found = ports(spec) or {}
    return [{"name": pooler_name(site), "site": site, "host": "127.0.0.1", "port": port, "user": SUPERUSER,
             "passfile": str(spec.pgpass), "databases": [APP_DATABASE],
             "databases_file": str(databases_file(spec, site)), "pause_timeout": 5.0}
            for site, port in found.items()]


def enable(lab: "Lab") -> dict[str, int]:
    """Create (once) and start the poolers, and list them in the lab's config."""
    spec = lab.spec
    found = ports(spec)
    if found is None:
        found = _pick_ports(spec)
        create(lab, found)
    start(lab)
    add_to_config(spec)
    return found


def _pick_ports(spec: LabSpec) -> dict[str, int]:
    taken = set(spec.ports()) | {spec.agent_port(s) for s in SITES}
    chosen: dict[str, int] = {}
    for site in SITES:
        for _ in range(200):
            port = random.randrange(20000, 32700)  # below the ephemeral range, as the lab's other ports
            if port not in taken and port not in chosen.values() and procs.port_free(port):
                chosen[site] = port
                break
        else:
            raise LabError("no free port on 127.0.0.1 for the lab's poolers")
    return chosen


def create(lab: "Lab", chosen: dict[str, int]) -> None:
    spec = lab.spec
    lab.owned_dir(spec.root / "poolers", 0o755)
    primary_port = spec.pg_port(PRIMARY_SITE)
    users = _auth_file_text(spec)
    for site, port in chosen.items():
        lab.owned_dir(pooler_dir(spec, site), 0o755)
        auth = pooler_dir(spec, site) / "userlist.txt"
        lab.write_owned(auth, users)
        lab.write_owned(databases_file(spec, site),
                        render_databases_file([APP_DATABASE], "127.0.0.1", primary_port, pooler_name(site)),
                        mode=0o644)
        lab.write_owned(ini_file(spec, site), POOLER_INI.format(
            site=site, databases_file=databases_file(spec, site), port=port, auth_file=auth, admin=SUPERUSER,
            log=pooler_dir(spec, site) / "pgbouncer.log", pidfile=pidfile(spec, site)), mode=0o644)
    state_file(spec).write_text(json.dumps(chosen) + "\n")


def _auth_file_text(spec: LabSpec) -> str:
    """PgBouncer's auth_file from the lab's pgpass (plain passwords: PgBouncer then logs in to
    PostgreSQL with SCRAM as the client did)."""
    entries = {}
    for line in spec.pgpass.read_text().splitlines():
        parts = line.split(":")
        if len(parts) == 5 and parts[3] in (SUPERUSER, APP_USER):
            entries[parts[3]] = parts[4]
    return "".join(f'"{user}" "{password}"\n' for user, password in entries.items())


def pid(spec: LabSpec, site: str) -> int | None:
    """The pooler's PID from its pidfile, if that process is alive and is PgBouncer run with this
    pooler's ini file (a stale pidfile may name a recycled PID)."""
    try:
        value = int(pidfile(spec, site).read_text().strip())
    except (OSError, ValueError):
        return None
    argv = procs.cmdline(value)
    if not procs.alive(value) or not argv or not argv[0].endswith("pgbouncer") or str(ini_file(spec, site)) not in argv:
        return None
    return value


def start(lab: "Lab") -> None:
    spec = lab.spec
    for site, port in (ports(spec) or {}).items():
        if pid(spec, site):
            continue
        if not Path(PGBOUNCER).exists():
            raise LabError(f"{PGBOUNCER} not found", hint="run scripts/setup.sh (apt-get install pgbouncer)")
        lab.progress(f"pgbouncer for site {site} on 127.0.0.1:{port}")
        lab.local.run([PGBOUNCER, "-d", str(ini_file(spec, site))], timeout=30).check(f"pgbouncer start (site {site})")
        if not procs.wait_until(lambda: pid(spec, site) is not None and procs.port_open(port), START_TIMEOUT):
            raise LabError(f"the pooler at site {site} did not start listening on {port}",
                           hint=f"see {pooler_dir(spec, site) / 'pgbouncer.log'}")


def stop(spec: LabSpec, site: str) -> None:
    """Stop one pooler by its PID (SIGINT: PgBouncer's safe shutdown; SIGKILL if it lingers)."""
    found = pid(spec, site)
    if not found:
        return
    os.kill(found, signal.SIGINT)
    if not procs.wait_until(lambda: not procs.alive(found), 5):
        os.kill(found, signal.SIGKILL)
        procs.wait_until(lambda: not procs.alive(found), 5)


def stop_all(spec: LabSpec) -> None:
    for site in (ports(spec) or {}):
        stop(spec, site)


def add_to_config(spec: LabSpec) -> None:
    """List the poolers under the first service of the lab's config (kept: its header comment)."""
    text = spec.config_path.read_text()
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    data = yaml.safe_load(text)
    data["services"][SERVICE]["poolers"] = config_entries(spec)
    spec.config_path.write_text(header + yaml.safe_dump(data, sort_keys=False))


def remove(spec: LabSpec) -> None:
    stop_all(spec)
    shutil.rmtree(spec.root / "poolers", ignore_errors=True)
