"""The two-site lab: two real PostgreSQL 15 servers on loopback with streaming replication,
file-store directories, a generated config and, with --transport ssh, one private sshd per site.
With --isolation netns (root) each site is in its own network namespace instead (see netns.py).

With --services N the lab holds N services, each with its own PostgreSQL cluster at each site
(not one database per service in a shared cluster): a promotion moves a whole cluster, so only
services in clusters of their own can be switched or failed over one at a time, as real
deployments that move services independently do. Every service has its own database (named like
the service), file store, ports and replication slots; all log in as the one APP_USER role.

As root the servers run as the unprivileged `postgres` user (PostgreSQL refuses root);
otherwise as the invoking user.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Callable

import psycopg
from psycopg import sql

from dcctl.errors import LabError, RefusedError
from dcctl.lab import netns, procs
from dcctl.lab.config_gen import lab_config_text
from dcctl.lab.layout import (APP_USER, DEFAULT_BASE_PORT, MAX_SERVICES, PRIMARY_SITE, REPLICATION_USER, SERVICE,
                              SITES, STANDBY_SITE, STORES, SUPERUSER, LabSpec)
from dcctl.pg import queries, tools
from dcctl.transport.base import Completed
from dcctl.transport.local import LocalTransport

Progress = Callable[[str], None]
DEFAULT_BIN_DIR = "/usr/lib/postgresql/15/bin"
STREAMING_TIMEOUT = 60.0

LAB_SETTINGS = """
# --- dcctl lab settings ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '{socket_dir}'
wal_level = replica
hot_standby = on
max_wal_senders = 10
max_replication_slots = 10
wal_log_hints = on
wal_keep_size = 128MB
wal_recycle = off
max_wal_size = 256MB
hot_standby_feedback = on
wal_receiver_status_interval = 1s
shared_buffers = 32MB
max_connections = 40
include_if_exists = 'dcctl-node.conf'
"""

# The operator's side and the other site reach a site's PostgreSQL on the lab network.
NETNS_HBA = """
# --- dcctl lab: the lab's network (--isolation netns) ---
host all all {network} scram-sha-256
host replication all {network} scram-sha-256
"""


def lab_user() -> pwd.struct_passwd:
    if os.geteuid() == 0:
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise LabError("running as root, the lab needs the unprivileged 'postgres' user, which does not exist",
                           hint="run scripts/setup.sh (it installs PostgreSQL 15), or run the lab as a normal user")
        # (unreachable)
    return pwd.getpwuid(os.geteuid())


def find_bin_dir() -> str:
    bin_dir = os.environ.get("DCCTL_PG_BIN", DEFAULT_BIN_DIR)
    if not Path(bin_dir, "initdb").exists():
        raise LabError(f"PostgreSQL 15 server binaries not found in {bin_dir}",
                       hint="run scripts/setup.sh (apt-get install postgresql-15) or set DCCTL_PG_BIN")
    return bin_dir


def read_spec(directory: str | Path) -> LabSpec | None:
    state = Path(directory) / "lab.json"
    if not state.exists():
        return None
    return LabSpec.from_json(state.read_text())


class Lab:
    def __init__(self, spec: LabSpec, progress: Progress = lambda message: None):
        self.spec = spec
        self.progress = progress
        self.user = pwd.getpwnam(spec.user)
        self.local = LocalTransport("lab", run_as=spec.user)

    # ---- up -------------------------------------------------------------------------------

    @classmethod
    def up(cls, directory: str | Path, base_port: int = DEFAULT_BASE_PORT, transport: str = "local",
           progress: Progress = lambda message: None, isolation: str = "none", services: int = 1) -> "Lab":
        root = Path(directory).absolute()
        if not 1 <= services <= MAX_SERVICES:
            raise RefusedError(f"--services {services}: a lab holds 1 to {MAX_SERVICES} services")
        if isolation == "netns":
            netns.require_netns()
            if transport != "ssh":
                raise RefusedError("--isolation netns runs dcctl over the ssh transport (one sshd per site "
                                   "namespace); the local transport would run the sites' commands outside them",
                                   hint="use --transport ssh (the default with --isolation netns)")
        existing = read_spec(root)
        if existing:
            if ((existing.transport, existing.base_port, existing.isolation, existing.services)
                    != (transport, base_port, isolation, services)):
                raise RefusedError(
                    f"a lab already exists in {root} with --transport {existing.transport} "
                    f"--base-port {existing.base_port} --isolation {existing.isolation} "
                    f"--services {existing.services}",
                    hint=f"run `dcctl lab down --dir {root}` first, or use another --dir")
            lab = cls(existing, progress)
            lab.start_all()
            return lab
        if root.exists() and any(root.iterdir()):
            raise RefusedError(f"{root} is not empty and holds no lab (no lab.json)",
                               hint="choose an empty or new --dir")
        user = lab_user()
        spec = LabSpec(dir=str(root), base_port=base_port, transport=transport, user=user.pw_name,
                       bin_dir=find_bin_dir(), isolation=isolation, services=services)
        # In namespaces every site has its own ports; the names and addresses are checked instead.
        busy = [p for p in spec.ports() if not procs.port_free(p)] if isolation != "netns" else []
        if isolation == "netns" and (remains := netns.leftovers(SITES)):
            raise RefusedError(f"a netns lab (or its remains) already exists: {', '.join(remains)}",
                               hint="run `dcctl lab down` on that lab first (one netns lab per machine)")
        if busy:
            raise RefusedError(f"port(s) {', '.join(map(str, busy))} on 127.0.0.1 already in use",
                               hint="choose another --base-port")
        lab = cls(spec, progress)
        try:
            lab.create()
        except BaseException:
            lab.teardown()
            raise
        return lab

    def create(self) -> None:
        spec = self.spec
        self.progress(f"creating the lab in {spec.root}")
        self.check_reachable_by_user(spec.root)
        spec.root.mkdir(parents=True, exist_ok=True)
        spec.root.chmod(0o755)
        spec.state_file.write_text(spec.to_json())
        if spec.isolation == "netns":
            self.progress("network namespaces: " + ", ".join(
                f"{netns.namespace(s)} ({spec.host(s)})" for s in SITES) + f", operator {netns.OPERATOR_ADDRESS}")
            netns.create_network(SITES)
        for path in (spec.root / "sites", spec.state_dir):
            path.mkdir(exist_ok=True)
        for site in SITES:
            self.owned_dir(spec.site_dir(site), 0o755)
            for service in spec.service_names:
                self.owned_dir(spec.service_dir(site, service), 0o755)
                for store in STORES:
                    self.owned_dir(spec.store_dir(site, store, service).parent, 0o755)
                    self.owned_dir(spec.store_dir(site, store, service), 0o755)
        self.owned_dir(spec.socket_dir, 0o700)
        passwords = {role: secrets.token_urlsafe(18) for role in (SUPERUSER, REPLICATION_USER, APP_USER)}
        pg_host = "*" if spec.isolation == "netns" else "127.0.0.1"  # netns: the sites' own addresses
        self.write_owned(spec.pgpass, "".join(f"{pg_host}:*:*:{role}:{pw}\n" for role, pw in passwords.items()))

        self.each_service(lambda service: self.create_primary(service, passwords))
        if spec.transport == "ssh":
            self.start_sshds()
        self.write_owned(spec.config_path, lab_config_text(spec), owner_is_user=False, mode=0o644)
        self.each_service(self.init_standby)
        self.progress(f"lab up: config {spec.config_path}")

    def each_service(self, action: Callable[[str], None]) -> None:
        """Run action(service) for every service of the lab, in parallel threads when there are several
        (their clusters are independent); the first failure is raised once all have ended."""
        names = self.spec.service_names
        if len(names) == 1:
            action(names[0])
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="dcctl-lab") as pool:
            futures = [pool.submit(action, name) for name in names]
        for future in futures:
            future.result()

    def _service_label(self, service: str) -> str:
        return "" if self.spec.services == 1 else f"service {service}: "

    def create_primary(self, service: str, passwords: dict[str, str]) -> None:
        self.progress(f"{self._service_label(service)}initdb: primary at site {PRIMARY_SITE} (data checksums on)")
        self.initdb(PRIMARY_SITE, passwords[SUPERUSER], service)
        self.start(PRIMARY_SITE, service)
        self.create_roles(passwords, service)

    def init_standby(self, service: str = SERVICE) -> None:
        """Build the standby with `dcctl replication init`, exactly as on real sites."""
        from dcctl.config import load_config
        from dcctl.replication.init import prepare_init

        self.progress(f"{self._service_label(service)}replication init: standby at site {STANDBY_SITE} "
                      f"(through the {self.spec.transport} transport)")
        config = load_config(self.spec.config_path)
        _plan, builder = prepare_init(config, service, config.services[service], source=PRIMARY_SITE,
                                      target=STANDBY_SITE, force=False)
        builder.run(_LabReporter(self.progress, self._service_label(service)))

    def check_reachable_by_user(self, root: Path) -> None:
        if self.user.pw_uid == os.geteuid():
            return
        for parent in [root, *root.parents]:
            if not parent.exists():
                continue  # created below with mode 0755
            mode = parent.stat()
            if mode.st_uid == self.user.pw_uid:
                continue
            if not mode.st_mode & stat.S_IXOTH and not (mode.st_gid == self.user.pw_gid and mode.st_mode & stat.S_IXGRP):
                raise LabError(f"the '{self.user.pw_name}' user that runs PostgreSQL cannot enter {parent} "
                               f"(mode {stat.filemode(mode.st_mode)})",
                               hint="put the lab under a directory others can traverse, e.g. --dir /tmp/dcctl-lab")

    def owned_dir(self, path: Path, mode: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
        os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def write_owned(self, path: Path, text: str, owner_is_user: bool = True, mode: int = 0o600) -> None:
        path.write_text(text)
        path.chmod(mode)
        if owner_is_user:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def initdb(self, site: str, superuser_password: str, service: str = SERVICE) -> None:
        spec = self.spec
        pwfile = spec.service_dir(site, service) / ".initdb-pw"
        self.write_owned(pwfile, superuser_password + "\n")
        try:
            self.local.run(tools.initdb(spec.bin_dir, str(spec.pgdata(site, service)), SUPERUSER, str(pwfile)),
                           timeout=120).check("initdb")
        finally:
            pwfile.unlink(missing_ok=True)
        conf = spec.pgdata(site, service) / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write(LAB_SETTINGS.format(socket_dir=spec.socket_dir))
        self.write_node_conf(site, service)
        if spec.isolation == "netns":
            with (spec.pgdata(site, service) / "pg_hba.conf").open("a") as fh:
                fh.write(NETNS_HBA.format(network=f"{netns.OPERATOR_ADDRESS}/{netns.PREFIX_LEN}"))

    def write_node_conf(self, site: str, service: str = SERVICE) -> None:
        text = f"port = {self.spec.pg_port(site, service)}\n"
        if self.spec.isolation == "netns":
            # All addresses of the site's namespace: its loopback and its lab address. Not the
            # address itself: pg_basebackup copies this file to the other site.
            text += "listen_addresses = '*'\n"
        self.write_owned(self.spec.pgdata(site, service) / "dcctl-node.conf", text)

    def create_roles(self, passwords: dict[str, str], service: str = SERVICE) -> None:
        with self.connect(PRIMARY_SITE, service=service) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} WITH LOGIN REPLICATION PASSWORD {}").format(
                sql.Identifier(REPLICATION_USER), sql.Literal(passwords[REPLICATION_USER])))
            conn.execute(sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}").format(
                sql.Identifier(APP_USER), sql.Literal(passwords[APP_USER])))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(self.spec.database(service)), sql.Identifier(APP_USER)))

    def connect(self, site: str, dbname: str = "postgres", service: str = SERVICE) -> psycopg.Connection:
        return psycopg.connect(host=self.spec.host(site), port=self.spec.pg_port(site, service), user=SUPERUSER,
                               dbname=dbname, passfile=str(self.spec.pgpass), connect_timeout=5, autocommit=True,
                               application_name="dcctl lab")

    def wait_streaming(self, site: str, service: str = SERVICE) -> None:
        def streaming() -> bool:
            try:
                with self.connect(site, service=service) as conn:
                    row = conn.execute(queries.REPLICATION_STREAMING).fetchone()
                    return bool(row and row[0] == "streaming")
            except psycopg.Error:
                return False

        if not procs.wait_until(streaming, STREAMING_TIMEOUT, interval=0.1):
            raise LabError(f"{self._service_label(service)}the standby at site {site} did not start streaming "
                           f"within {STREAMING_TIMEOUT:g} s", hint=f"see {self.spec.pg_log(site, service)}")

    # ---- start / stop ---------------------------------------------------------------------

    def running(self, site: str, service: str = SERVICE) -> int | None:
        return procs.postmaster_pid(self.spec.pgdata(site, service))

    def start(self, site: str, service: str = SERVICE) -> None:
        if self.running(site, service):
            return
        spec = self.spec
        if not spec.pgdata(site, service).exists():
            raise LabError(f"the lab's data directory {spec.pgdata(site, service)} is missing",
                           hint=f"run `dcctl lab down --dir {spec.dir}` and `dcctl lab up` again")
        argv = tools.pg_ctl_start(spec.bin_dir, str(spec.pgdata(site, service)), str(spec.pg_log(site, service)))
        if spec.isolation == "netns":
            self.run_in_namespace(site, argv, timeout=90).check(f"pg_ctl start (site {site})")
            return
        self.local.run(argv, timeout=90).check(f"pg_ctl start (site {site})")

    def run_in_namespace(self, site: str, argv: list[str], timeout: float) -> Completed:
        """Run argv as the lab user inside the site's network namespace (entering one needs root)."""
        full = [*netns.exec_prefix(site), "runuser", "-u", self.user.pw_name, "--", *argv]
        proc = subprocess.run(full, cwd=self.user.pw_dir, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        return Completed(tuple(full), proc.returncode, proc.stdout, proc.stderr)

    def stop(self, site: str, mode: str = "fast", service: str = SERVICE) -> None:
        spec = self.spec
        pid = self.running(site, service)
        if not pid:
            return
        result = self.local.run(tools.pg_ctl_stop(spec.bin_dir, str(spec.pgdata(site, service)), mode=mode,
                                                  timeout=30), timeout=40)
        if result.ok:
            return
        if self.running(site, service) == pid:
            os.kill(pid, signal.SIGKILL)
            procs.wait_until(lambda: not procs.alive(pid), 10)

    def sshds(self) -> dict:
        from dcctl.lab.sshd import PrivateSshd

        spec = self.spec
        isolated = spec.isolation == "netns"
        return {site: PrivateSshd(spec.sshd_dir(site), spec.sshd_port(site), spec.user,
                                  spec.ssh_dir / "authorized_keys", host=spec.host(site),
                                  exec_prefix=netns.exec_prefix(site) if isolated else None) for site in SITES}

    def start_sshds(self) -> None:
        from dcctl.lab.sshd import ensure_client_key

        spec = self.spec
        spec.ssh_dir.mkdir(exist_ok=True)
        key = ensure_client_key(spec.ssh_dir)
        # File sync runs rsync -e ssh at a site as the site's user, with this key: it must be theirs.
        os.chown(key, self.user.pw_uid, self.user.pw_gid)
        entries = []
        for site, sshd in self.sshds().items():
            self.progress(f"sshd for site {site} on {spec.host(site)}:{spec.sshd_port(site)}")
            sshd.prepare()
            if not sshd.running():
                sshd.start()
            entries.append(sshd.known_hosts_entry())
        (spec.ssh_dir / "known_hosts").write_text("\n".join(entries) + "\n")

    def start_all(self) -> None:
        if self.spec.isolation == "netns" and set(netns.leftovers(SITES)) != set(_network_names()):
            netns.remove_network(SITES)  # e.g. after a reboot: rebuild what is missing
            netns.create_network(SITES)
        for service in self.spec.service_names:
            for site in SITES:
                self.start(site, service)
        for service in self.spec.service_names:
            self.wait_streaming(STANDBY_SITE, service)
        if self.spec.transport == "ssh":
            self.start_sshds()
        from dcctl.lab import pgbouncer

        pgbouncer.start(self)  # a lab made with --poolers restarts its poolers too
        self.progress(f"lab up: config {self.spec.config_path}")

    def teardown(self) -> None:
        """Stop every process the lab started and remove its directory."""
        spec = self.spec
        def stop_service(service: str) -> None:
            for site in reversed(SITES):
                self.stop(site, mode="immediate" if site == STANDBY_SITE else "fast", service=service)

        from dcctl.lab import pgbouncer

        pgbouncer.stop_all(spec)  # the poolers first: they hold connections to the servers
        self.each_service(stop_service)
        if spec.transport == "ssh" and spec.ssh_dir.exists():
            for sshd in self.sshds().values():
                sshd.stop()
        if spec.isolation == "netns":
            netns.remove_network(SITES)
        if spec.state_file.exists():
            shutil.rmtree(spec.root, ignore_errors=True)

    def status(self) -> dict:
        """`sites`: the first service's servers (as before --services); `services`: every service's."""
        spec = self.spec
        services = {service: {"database": spec.database(service), "dsn": spec.app_dsn(service),
                              "sites": self.site_status(service)} for service in spec.service_names}
        return {"dir": spec.dir, "transport": spec.transport, "isolation": spec.isolation, "user": spec.user,
                "config": str(spec.config_path), "dsn": spec.app_dsn(), "sites": services[SERVICE]["sites"],
                "services": services}

    def site_status(self, service: str) -> dict:
        spec = self.spec
        sites = {}
        for site in SITES:
            port = spec.pg_port(site, service)
            entry = {"postgres_pid": self.running(site, service), "postgres_port": port,
                     "address": spec.host(site),
                     "postgres_listening": procs.port_open(port, host=spec.host(site)),
                     "data_dir": str(spec.pgdata(site, service)),
                     "file_stores": {s: str(spec.store_dir(site, s, service)) for s in STORES}}
            if spec.transport == "ssh":
                sshd = self.sshds()[site]
                entry.update(sshd_port=spec.sshd_port(site), sshd_pid=sshd.pid if sshd.running() else None)
            if spec.isolation == "netns":
                entry["namespace"] = netns.namespace(site)
            sites[site] = entry
        return sites


def _network_names() -> tuple[str, ...]:
    return (*(netns.namespace(s) for s in SITES), netns.BRIDGE, *(netns.host_veth(s) for s in SITES))


class _LabReporter:
    def __init__(self, progress: Progress, prefix: str = ""):
        self.say = progress
        self.prefix = prefix  # "service NAME: " in a lab of several services, whose standbys are built at once

    def step_started(self, index, total, step) -> None:
        self.say(f"  {self.prefix}[{index}/{total}] {step.describe}")

    def step_finished(self, index, total, step, seconds) -> None:
        pass

    def progress(self, done, total) -> None:
        pass


def lab_down(directory: str | Path, progress: Progress = lambda message: None) -> bool:
    """Stop and remove the lab in `directory`. False when there was none."""
    spec = read_spec(directory)
    if spec is None:
        return False
    progress(f"stopping the lab in {spec.dir}")
    started = time.monotonic()
    Lab(spec, progress).teardown()
    progress(f"lab down in {time.monotonic() - started:.1f} s")
    return True


def open_lab(directory: str | Path) -> Lab:
    spec = read_spec(directory)
    if spec is None:
        raise LabError(f"no lab in {Path(directory).absolute()} (no lab.json)",
                       hint=f"create one with `dcctl lab up --dir {directory}`")
    return Lab(spec)
