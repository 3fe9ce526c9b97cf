"""Where everything of a lab lives, and which ports it uses (pure)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

SERVICE = "massar"
PRIMARY_SITE = "rabat"
STANDBY_SITE = "backup"
SITES = (PRIMARY_SITE, STANDBY_SITE)
STORES = ("documents",)
APP_DATABASE = "massar"
APP_USER = "massar_app"
SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
# Below Linux's ephemeral range (32768-60999), where outgoing connections take their local
# ports: a lab port there can be taken by a client socket a moment before a server binds it.
DEFAULT_BASE_PORT = 25430
# --isolation netns: the sites' own addresses, from 198.18.0.0/15 (reserved for network
# benchmarks); the operator's side, in the root namespace, holds NETNS_OPERATOR_ADDRESS.
NETNS_ADDRESSES = {PRIMARY_SITE: "198.18.1.1", STANDBY_SITE: "198.18.2.1"}
NETNS_OPERATOR_ADDRESS = "198.18.0.1"
NETNS_PREFIX_LEN = 15


@dataclass(frozen=True)
class LabSpec:
    """Recorded in DIR/lab.json when the lab is created; `up`, `down` and `status` read it back."""

    dir: str
    base_port: int
    transport: str  # local | ssh
    user: str  # OS user running the servers
    bin_dir: str
    isolation: str = "none"  # none | netns (each site in its own network namespace, see netns.py)

    def host(self, site: str) -> str:
        """The address a site's servers listen on, as seen from the operator's side."""
        return NETNS_ADDRESSES[site] if self.isolation == "netns" else "127.0.0.1"

    def pg_port(self, site: str) -> int:
        return self.base_port + SITES.index(site)

    def sshd_port(self, site: str) -> int:
        return self.base_port + 2 + SITES.index(site)

    def agent_port(self, site: str) -> int:
        return self.base_port + 4 + SITES.index(site)

    def ports(self) -> list[int]:
        ports = [self.pg_port(s) for s in SITES]
        if self.transport == "ssh":
            ports += [self.sshd_port(s) for s in SITES]
        return ports

    @property
    def root(self) -> Path:
        return Path(self.dir)

    def site_dir(self, site: str) -> Path:
        return self.root / "sites" / site

    def pgdata(self, site: str) -> Path:
        return self.site_dir(site) / "pgdata"

    def pg_log(self, site: str) -> Path:
        return self.site_dir(site) / "postgresql.log"

    def store_dir(self, site: str, store: str) -> Path:
        return self.site_dir(site) / "files" / store

    def sshd_dir(self, site: str) -> Path:
        return self.root / "ssh" / site

    @property
    def ssh_dir(self) -> Path:
        return self.root / "ssh"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def pgpass(self) -> Path:
        return self.root / "pgpass"

    @property
    def config_path(self) -> Path:
        return self.root / "dcctl.yaml"

    @property
    def state_file(self) -> Path:
        return self.root / "lab.json"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "LabSpec":
        return cls(**json.loads(text))

    def app_dsn(self) -> str:
        hosts = ",".join(self.host(s) for s in SITES)
        ports = ",".join(str(self.pg_port(s)) for s in SITES)
        return (f"host={hosts} port={ports} dbname={APP_DATABASE} user={APP_USER} passfile={self.pgpass} "
                f"target_session_attrs=read-write connect_timeout=2")
