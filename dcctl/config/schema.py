"""The config, declared once: every key with its type, range, default and help.

Each section is a frozen dataclass; the loader (load.py) reads the declarations from the
dataclass fields, so a key exists in exactly one place. Help texts feed the example config
and the error messages.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MIB = 1024 * 1024


def key(default=..., *, help: str, min=None, max=None, expect: str | None = None):
    """Declare a config key. `...` as default means the key is required."""
    metadata = {"help": help, "min": min, "max": max, "expect": expect}
    if default is ...:
        return field(metadata=metadata)
    if isinstance(default, (dict, list)) or hasattr(default, "__dataclass_fields__"):
        return field(default_factory=lambda: default, metadata=metadata)
    return field(default=default, metadata=metadata)


PORT = {"min": 1, "max": 65535}


@dataclass(frozen=True)
class LocalTransportConfig:
    type: Literal["local"] = key(help="run commands on this machine with subprocess")
    run_as: str | None = key(None, help="OS user that runs PostgreSQL's tools when dcctl runs as root (e.g. postgres)")


@dataclass(frozen=True)
class SshTransportConfig:
    type: Literal["ssh"] = key(help="reach the site over SSH (paramiko)")
    host: str = key(help="SSH host name or address of the site")
    user: str = key(help="SSH user; commands run as this user (normally the PostgreSQL OS user)")
    known_hosts: str = key(help="known_hosts file with the site's host key; unknown or changed keys are refused",
                           expect="a path")
    port: int = key(22, help="SSH port", **PORT)
    key_file: str | None = key(None, help="private key file; when unset, use_agent must be true", expect="a path")
    use_agent: bool = key(False, help="also try keys from a running ssh-agent")
    connect_timeout: float = key(5.0, help="seconds to wait for TCP connect, banner and authentication", min=0.1, max=300)
    command_timeout: float = key(120.0, help="default seconds a remote command may run", min=0.1, max=86400)
    keepalive_interval: float = key(10.0, help="seconds between SSH keepalives (0 disables)", min=0, max=3600)


@dataclass(frozen=True)
class ControlConfig:
    method: Literal["pg_ctl", "systemd"] = key("pg_ctl", help="how to start and stop PostgreSQL at this site")
    unit: str | None = key(None, help="systemd unit of the cluster (method: systemd), e.g. postgresql@15-main")
    use_sudo: bool = key(False, help="prefix systemctl with 'sudo -n' (method: systemd)")
    log_file: str | None = key(None, help="server log for pg_ctl start -l (method: pg_ctl); default: "
                                          "<data_dir>/../<basename of data_dir>.log", expect="a path")
    start_timeout: float = key(120.0, help="seconds to wait for PostgreSQL to start or stop", min=1, max=86400)


@dataclass(frozen=True)
class PostgresConfig:
    data_dir: str = key(help="data directory (PGDATA) at the site", expect="a path")
    host: str = key("127.0.0.1", help="address dcctl and the peer site use to reach this PostgreSQL")
    port: int = key(5432, help="PostgreSQL port", **PORT)
    bin_dir: str = key("/usr/lib/postgresql/15/bin", help="directory of pg_ctl, pg_basebackup, pg_rewind ...",
                       expect="a path")
    control: ControlConfig = key(ControlConfig(), help="start/stop method")
    user: str = key("postgres", help="superuser role dcctl connects as (status, promote, rewind)")
    dbname: str = key("postgres", help="database dcctl connects to")
    replication_user: str = key("replicator", help="role with REPLICATION used by the standby")
    passfile: str | None = key(None, help="libpq password file dcctl reads where it runs; passwords never go in "
                                          "this config", expect="a path")
    replication_passfile: str | None = key(None, help="password file AT THIS SITE that its standby connection "
                                                      "(pg_basebackup, primary_conninfo) reads; default: libpq's "
                                                      "~/.pgpass of the site's OS user", expect="a path")
    slot_name: str | None = key(None, help="physical slot this node streams from when it is a standby "
                                          "(default: dcctl_<site>)")
    connect_timeout: float = key(3.0, help="seconds per connection attempt (libpq rounds below 2 up to 2)",
                                 min=1, max=300)
    statement_timeout: float = key(5.0, help="seconds any dcctl query may run", min=0.1, max=3600)


@dataclass(frozen=True)
class AgentConfig:
    listen: str = key("127.0.0.1:9640", help="host:port the agent serves /metrics and /healthz on",
                      expect="host:port")
    fence_stale_primary: bool = key(True, help="stop this site's PostgreSQL (immediate) when it runs as a primary "
                                               "on an older generation than the other site's: it was failed over "
                                               "and must be rejoined, never written to")
    watch_interval: float = key(0.5, help="seconds between two generation watches: this site's PostgreSQL and "
                                          "its peer's are asked their role and timeline, and a primary that "
                                          "another one has superseded is stopped at once (0: no watch; the "
                                          "collection every `interval` still fences)", min=0, max=60)
    isolation_fence_after: float | None = key(None, help="seconds after which a primary that reaches neither "
                                                         "the peer's PostgreSQL nor its agent (nor the witness, "
                                                         "when set) stops itself, so that a partitioned old "
                                                         "primary cannot go on acknowledging writes; unset: "
                                                         "never (see docs/runbooks.md, isolation)",
                                              min=1, max=86400)
    witness: str | None = key(None, help="host:port of a third place both sites can reach (any TCP listener); a "
                                         "primary that still connects to it is not isolated and does not stop "
                                         "itself", expect="host:port")
    interval: float = key(15.0, help="seconds between two background collections; a scrape only reads the last "
                                     "one", min=1, max=3600)
    tls_cert_file: str | None = key(None, help="PEM certificate (chain) to serve HTTPS with; needs tls_key_file",
                                    expect="a path")
    tls_key_file: str | None = key(None, help="PEM private key of tls_cert_file", expect="a path")
    basic_auth_username: str | None = key(None, help="require HTTP basic auth with this user name; needs "
                                                     "basic_auth_password_hash")
    basic_auth_password_hash: str | None = key(None, help="bcrypt hash of the basic-auth password (never the "
                                                          "password itself); make one with `dcctl agent "
                                                          "hash-password`", expect="a bcrypt hash ($2b$...)")


@dataclass(frozen=True)
class HookConfig:
    site: str = key(help="where the command runs: a site name, or old_primary / new_primary (roles at the start "
                         "of the operation)")
    run: str = key(help="shell command, run with sh -c at that site")
    timeout: float = key(60.0, help="seconds the command may run", min=0.1, max=86400)
    on_failure: Literal["abort", "continue"] = key("abort", help="abort: stop the operation (rolled back before "
                                                                 "promotion); continue: record and go on")
    mask: list[str] = key([], help="regular expressions whose matches are shown as *** wherever the command is "
                                   "shown (plan, journal, reports); it runs unchanged. Values of arguments named "
                                   "like token, password, secret, api_key or auth are hidden anyway",
                          expect="a list of regular expressions")


@dataclass(frozen=True)
class OperationConfig:
    """Deadlines and retries of switchover, failover and rejoin, each named so a report can cite it."""

    stop_deadline: float = key(20.0, help="seconds the old primary may take to shut down (kept under PostgreSQL's "
                                          "wal_sender_timeout, 60 s: a hung standby cannot stretch the window to it)",
                               min=1, max=3600)
    replay_deadline: float = key(30.0, help="seconds the standby may take to replay the old primary's shutdown "
                                            "checkpoint before the switchover is rolled back", min=0.5, max=3600)
    promote_deadline: float = key(60.0, help="seconds the promoted standby may take to accept writes", min=1,
                                  max=3600)
    stream_deadline: float = key(120.0, help="seconds the new standby may take to stream again", min=1, max=86400)
    rewind_deadline: float = key(3600.0, help="seconds pg_rewind may run", min=1, max=86400)
    fence_deadline: float = key(10.0, help="seconds a failover may spend stopping a reachable old primary, "
                                           "escalating fast -> immediate -> SIGKILL -> fence_command", min=1,
                                max=3600)
    connect_retries: int = key(3, help="attempts to (re)connect to a node inside an operation", min=1, max=100)
    max_lag_bytes: int = key(64 * MIB, help="switchover preflight refuses when the standby is further behind",
                             min=0)
    max_receipt_age: float = key(5.0, help="switchover preflight refuses when the standby's WAL receiver last "
                                           "heard from the primary longer ago (seconds; it nudges the primary "
                                           "first, so a live receiver has just heard); 0 disables", min=0,
                                 max=3600)


@dataclass(frozen=True)
class SqlCheckConfig:
    name: str = key(help="what the check proves, e.g. 'enrolments present'")
    query: str = key(help="SQL returning one value (first column of the first row)")
    expect: Literal["at_least", "newer_than_minutes", "true"] = key("true", help="at_least: value >= `value`; "
                                                                   "newer_than_minutes: a timestamp within `value` "
                                                                   "minutes of the primary's clock; true: the value "
                                                                   "is true")
    value: float | None = key(None, help="the number at_least and newer_than_minutes compare with")
    database: str | None = key(None, help="database to run it in (default: the service's database)")


@dataclass(frozen=True)
class DrillConfig:
    site: str | None = key(None, help="site that hosts the throwaway copy (default: the standby)")
    port: int = key(5499, help="scratch port of the throwaway copy (listens on that site's postgres.host)", **PORT)
    scratch_dir: str | None = key(None, help="directory at that site for the copy (default: <site "
                                             "state_dir>/drill); must not be served or backed up", expect="a path")
    start_deadline: float = key(600.0, help="seconds the copy may take to start and to promote", min=1, max=86400)
    sql_checks: list[SqlCheckConfig] = key([], help="verification queries run on the promoted copy (or, in a full "
                                                    "drill, on the new primary)", expect="a list of checks")
    file_sample: int = key(20, help="files per store compared by checksum between the sites (0: all)", min=0)
    max_rate_mb: int = key(64, help="MB/s the copy may read from the standby (0: no limit); the copy also runs "
                                    "at the lowest CPU priority, so that the drill stays out of production's way",
                           min=0, max=100000)
    pacing: Literal["even", "server"] = key("even", help="how the copy keeps to max_rate_mb: even (dcctl paces it at "
                                                         "the standby's site, 64 KiB at a time, with the site's "
                                                         "python3) or server (pg_basebackup --max-rate: the "
                                                         "walsender sends in bursts of an eighth of a second's worth, "
                                                         "which production's commits wait behind)")
    dwell_seconds: float = key(0.0, help="full drill: seconds to stay on the backup site before switching back",
                               min=0, max=86400)


@dataclass(frozen=True)
class SiteConfig:
    transport: LocalTransportConfig | SshTransportConfig = key(help="how dcctl reaches the site",
                                                               expect="a mapping with type: local or ssh")
    postgres: PostgresConfig = key(help="the PostgreSQL node of the service at this site")
    file_stores: dict[str, str] = key({}, help="file stores at this site: name -> directory", expect="a path")
    state_dir: str = key("/var/lib/dcctl", help="directory AT THIS SITE where dcctl records the generation, "
                                               "its operation lock and file-sync state (holding area, "
                                               "quarantine)", expect="a path")
    fence_command: str | None = key(None, help="shell command run where dcctl runs to fence this site in a "
                                               "failover when it is unreachable or its PostgreSQL cannot be "
                                               "stopped (e.g. cut its power or network); exit 0 means fenced")
    fence_command_timeout: float = key(60.0, help="seconds the fence_command may run", min=1, max=3600)
    agent: AgentConfig = key(AgentConfig(), help="the dcctl agent at this site")


@dataclass(frozen=True)
class Thresholds:
    lag_bytes_warn: int = key(16 * MIB, help="replication lag in bytes that raises WARN", min=0)
    lag_bytes_crit: int = key(256 * MIB, help="replication lag in bytes that raises CRIT", min=0)
    lag_seconds_warn: float = key(30.0, help="replay lag in seconds that raises WARN", min=0)
    lag_seconds_crit: float = key(300.0, help="replay lag in seconds that raises CRIT", min=0)
    slot_retained_bytes_warn: int = key(1024 * MIB, help="WAL kept by one replication slot that raises WARN "
                                                         "(an inactive slot that keeps any WAL also warns)", min=0)
    slot_retained_bytes_crit: int = key(8 * 1024 * MIB, help="WAL kept by one replication slot that raises CRIT",
                                        min=0)
    disk_free_warn_ratio: float = key(0.15, help="free share of a volume (data, WAL, file store) below which "
                                                 "to WARN", min=0, max=1)
    disk_free_crit_ratio: float = key(0.05, help="free share of a volume below which to raise CRIT", min=0, max=1)
    clock_skew_warn_seconds: float = key(1.0, help="clock difference between the sites that raises WARN", min=0)
    clock_skew_crit_seconds: float = key(10.0, help="clock difference between the sites that raises CRIT", min=0)
    drill_max_age_days: float = key(8.0, help="age of the last successful drill that raises WARN", min=0)
    filesync_lag_warn_seconds: float = key(60.0, help="file sync lag (age of the oldest change not yet on the "
                                                      "standby) that raises WARN", min=0)
    filesync_lag_crit_seconds: float = key(600.0, help="file sync lag that raises CRIT", min=0)
    filesync_backlog_warn: int = key(10000, help="files waiting to be synced that raise WARN", min=0)
    filesync_backlog_crit: int = key(100000, help="files waiting to be synced that raise CRIT", min=0)
    filesync_reconcile_age_warn_seconds: float = key(3600.0, help="age of the last full file-store "
                                                                  "reconciliation that raises WARN", min=0)
    filesync_reconcile_age_crit_seconds: float = key(6 * 3600.0, help="age of the last full reconciliation "
                                                                      "that raises CRIT", min=0)


@dataclass(frozen=True)
class StoreSyncConfig:
    owners: Literal["keep", "ignore"] = key("keep", help="keep: the receiving copy keeps each entry's owner and "
                                                        "group, which needs rsync to run as root there (SSH user "
                                                        "root, or rsync_path 'sudo -n rsync'); ignore: entries "
                                                        "take the receiving user's owner, and verify does not "
                                                        "compare owners and groups")


@dataclass(frozen=True)
class FileSyncConfig:
    """How the primary site's agent mirrors the file stores to the standby site (docs/filesync.md)."""

    batch_window: float = key(0.02, help="seconds events are collected, from the first one, before a batch is "
                                         "pushed", min=0, max=60)
    max_batch_files: int = key(5000, help="most paths one batch (one rsync) carries", min=1, max=1000000)
    reconcile_interval: float = key(600.0, help="seconds between two full reconciliations (one also runs when "
                                                "the agent starts and when events may have been missed)",
                                    min=10, max=7 * 86400)
    role_check_interval: float = key(2.0, help="seconds between the agent's checks of which site is primary "
                                               "(the primary pushes)", min=0.2, max=600)
    holding_retention_days: float = key(30.0, help="days files replaced or deleted by sync are kept in the "
                                                   "receiving site's holding area", min=0)
    mass_delete_share: float = key(0.10, help="share of the receiving store that one batch or reconciliation may "
                                              "delete; more is refused until `dcctl filesync run "
                                              "--allow-mass-delete`", min=0, max=1)
    mass_delete_floor: int = key(10, help="deletions up to this count are never a mass deletion (in a tiny store "
                                          "a single delete exceeds the share)", min=0)
    rsync_path: str = key("rsync", help="the rsync program at both sites (e.g. 'sudo -n rsync' on the receiving "
                                        "site keeps owners when the SSH user is not root)")
    io_timeout: float = key(60.0, help="seconds rsync may wait for the other side before it gives up "
                                       "(rsync --timeout)", min=1, max=86400)
    reconcile_timeout: float = key(86400.0, help="seconds one full reconciliation may run", min=10, max=7 * 86400)
    ssh_control_persist: float = key(300.0, help="seconds an idle SSH connection to the other site is kept open "
                                                 "for the next batch", min=1, max=86400)
    receipt_interval: float = key(5.0, help="seconds between two records of 'synced up to' on the receiving site "
                                            "(what a failover reports)", min=0.1, max=3600)
    max_pending: int = key(200000, help="paths waiting beyond which the agent drops them and runs a full "
                                        "reconciliation instead (bounds its memory)", min=100)
    stores: dict[str, StoreSyncConfig] = key({}, help="settings of one store: store name (as in the sites' "
                                                      "file_stores) -> settings", expect="a mapping of settings")

    def keeps_owners(self, store: str) -> bool:
        return self.stores.get(store, StoreSyncConfig()).owners == "keep"


@dataclass(frozen=True)
class ReplicationConfig:
    """Whether a commit waits for the standby (docs/runbooks.md, synchronous replication)."""

    mode: Literal["async", "sync", "strict"] = key("async", help="async: commits do not wait for the standby; "
                                                   "sync: they wait for it (a fenced old primary's commits are "
                                                   "never acknowledged, failover loses nothing), and the "
                                                   "primary's agent stops waiting after relax_after seconds "
                                                   "without a streaming standby; strict: they always wait")
    relax_after: float = key(10.0, help="sync mode: seconds without a streaming standby after which the primary's "
                                        "agent lets commits go on without it (the bound on commits an isolated "
                                        "primary can acknowledge alone); restored when the standby streams "
                                        "again", min=0, max=86400)


@dataclass(frozen=True)
class PoolerConfig:
    """A PgBouncer the applications connect through (docs/operations.md, Poolers)."""

    name: str = key(help="name of the pooler in reports, checks and metrics, e.g. rabat-bouncer")
    site: str | None = key(None, help="site where it runs: its databases_file is written through that site's "
                                      "transport; unset: a pooler elsewhere, whose file dcctl writes where "
                                      "it runs (or console_only: true)")
    host: str = key("127.0.0.1", help="address of its admin console")
    port: int = key(6432, help="port of its admin console (PgBouncer listen_port)", **PORT)
    user: str = key("pgbouncer", help="admin user (in PgBouncer's admin_users)")
    passfile: str | None = key(None, help="libpq password file with the admin user's password", expect="a path")
    databases: list[str] = key([], help="PgBouncer database names it serves for this service, each pointed at "
                                        "the database of the same name on the primary (default: the service's "
                                        "database)", expect="a list of names")
    databases_file: str | None = key(None, help="the file %include'd in its pgbouncer.ini that dcctl rewrites "
                                                "atomically (a [databases] section) before RELOAD",
                                     expect="a path")
    console_only: bool = key(False, help="dcctl only pauses and resumes it (it learns the primary some other "
                                         "way); no databases_file")
    pause_timeout: float = key(5.0, help="seconds PAUSE may wait for transactions in flight before the "
                                         "switchover resumes the pooler and rolls back", min=0.1, max=3600)
    connect_timeout: float = key(3.0, help="seconds to reach its admin console", min=1, max=300)
    stuck_pause_after: float = key(60.0, help="seconds the agent lets it stay paused while no operation holds "
                                              "the service lock before it resumes it", min=1, max=86400)


@dataclass(frozen=True)
class ServiceConfig:
    sites: dict[str, SiteConfig] = key(help="exactly two sites: name -> site")
    database: str | None = key(None, help="the application's database (used by drills and the lab)")
    thresholds: Thresholds = key(Thresholds(), help="check and alert thresholds")
    hooks: dict[str, list[HookConfig]] = key({}, help="hook point name (e.g. before_switch, after_promote) -> "
                                                      "commands", expect="a list of hooks")
    operation: OperationConfig = key(OperationConfig(), help="deadlines and retries of operations")
    filesync: FileSyncConfig = key(FileSyncConfig(), help="continuous file-store sync from the primary site")
    drill: DrillConfig = key(DrillConfig(), help="what a drill copies, where, and how it verifies")
    replication: ReplicationConfig = key(ReplicationConfig(), help="asynchronous or synchronous replication "
                                                                   "(driven by the agents)")
    poolers: list[PoolerConfig] = key([], help="PgBouncer instances paused, repointed and resumed around a "
                                               "switchover", expect="a list of poolers")

    def site(self, site: str, service_name: str) -> SiteConfig:
        """The site a command line names; an unknown name is a usage error (exit 2) listing the known ones."""
        from dcctl.errors import UsageError

        if site not in self.sites:
            raise UsageError(f"no site named {site!r} in service {service_name}; known sites: {', '.join(self.sites)}")
        return self.sites[site]


@dataclass(frozen=True)
class RecoveryGroup:
    """One group of a recovery plan; written as a plain list of service names, or as a mapping."""

    LIST_KEY = "services"  # the key a plain list stands for (load.py)

    services: list[str] = key(help="services moved together, in parallel", expect="a list of service names")
    on_failure: Literal["stop", "continue"] = key("stop", help="a service of this group that rolls back: stop "
                                                               "the plan before the next group, or continue")
    listed: bool = field(default=False, metadata={"internal": True})  # written as a plain list (its key paths)


@dataclass(frozen=True)
class Config:
    services: dict[str, ServiceConfig] = key(help="protected services: name -> service")
    version: int = key(1, help="config format version", min=1, max=1)
    state_dir: str = key("/var/lib/dcctl", help="where journals, locks and reports are kept", expect="a path")
    playbooks_dir: str | None = key(None, help="directory with switchover.yaml, failover.yaml, rejoin.yaml "
                                               "(default: the playbooks shipped with dcctl)", expect="a path")
    site_timeout: float = key(5.0, help="seconds a status or check may wait for one site before calling it "
                                        "unreachable", min=0.5, max=600)
    recovery_plan: list[RecoveryGroup] | None = key(None, help="the order a site operation moves the services in: "
                                                               "groups run in order, the services of a group in "
                                                               "parallel; every service in exactly one group "
                                                               "(default: one group holding every service)",
                                                    expect="a list of groups (each a list of service names, or "
                                                           "{services: [...], on_failure: stop|continue})")
    source: str = field(default="<memory>", metadata={"internal": True})

    def recovery_groups(self) -> list[RecoveryGroup]:
        """The recovery plan as configured, or its default: one group holding every service."""
        if self.recovery_plan is not None:
            return list(self.recovery_plan)
        return [RecoveryGroup(services=list(self.services))]

    def service(self, name: str | None) -> tuple[str, ServiceConfig]:
        """The service a command line names (or the only one); an unknown or missing name is a usage
        error (exit 2) listing the configured services."""
        from dcctl.errors import UsageError

        if name is None:
            if len(self.services) == 1:
                return next(iter(self.services.items()))
            raise UsageError(f"several services are configured ({', '.join(self.services)}); choose one with "
                             f"--service")
        if name not in self.services:
            raise UsageError(f"no service named {name!r} in {self.source}; configured: {', '.join(self.services)}")
        return name, self.services[name]

    def require_site(self, site: str, service_name: str | None = None) -> None:
        """`site` must be a site of `service_name`, or without one of some service: a usage error
        (exit 2) listing the known sites otherwise."""
        from dcctl.errors import UsageError

        if service_name is not None:
            name, service = self.service(service_name)
            service.site(site, name)
            return
        known = sorted({name for service in self.services.values() for name in service.sites})
        if site not in known:
            raise UsageError(f"no site named {site!r} in any service; known sites: {', '.join(known)}")
