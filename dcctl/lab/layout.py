"""Where everything of a lab lives, and which ports it uses (pure)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

SERVICE = "massar"
# The lab's services in order (`lab up --services N` takes the first N; past these, service5, ...).
# The first is the lab as it always was: same paths, ports and names.
NAMED_SERVICES = (SERVICE, "identity", "portal", "archives")
MAX_SERVICES = 8
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
# Ports: base+0..6 are the first service's (servers, sshds, agents, drill copy); every further
# service takes a block of three from base+10: its server at each site, then its drill copy.
EXTRA_PORTS_FROM = 10
PORTS_PER_EXTRA_SERVICE = 3


def service_names(count: int) -> tuple[str, ...]:
    """The names of a lab's first `count` services.

    >>> service_names(1), service_names(5)
    (('massar',), ('massar', 'identity', 'portal', 'archives', 'service5'))
    """
    return tuple(NAMED_SERVICES[i] if i < len(NAMED_SERVICES) else f"service{i + 1}" for i in range(count))


def port_span(services: int) -> int:
    """How many consecutive ports from the base port a lab of `services` services may use.

    >>> port_span(1), port_span(3)
    (8, 16)
    """
    return 8 if services == 1 else EXTRA_PORTS_FROM + PORTS_PER_EXTRA_SERVICE * (services - 1)


@dataclass(frozen=True)
class LabSpec:
    """Recorded in DIR/lab.json when the lab is created; `up`, `down` and `status` read it back."""

    dir: str
    base_port: int
    transport: str  # local | ssh
    user: str  # OS user running the servers
    bin_dir: str
    isolation: str = "none"  # none | netns (each site in its own network namespace, see netns.py)
    # One PostgreSQL cluster per service per site, as real deployments that move services one at a
    # time need: a promotion moves a whole cluster, so services sharing a cluster could only move together.
    services: int = 1

    @property
    def service_names(self) -> tuple[str, ...]:
        return service_names(self.services)

    def _extra_index(self, service: str) -> int:
        """0 for the first service, 1.. for the others; an unknown name is a bug of the caller."""
        names = self.service_names
        if service not in names:
            raise ValueError(f"the lab has no service {service!r} (it has {', '.join(names)})")
        return names.index(service)

    def _extra_port(self, service: str, offset: int) -> int:
        index = self._extra_index(service)
        return self.base_port + EXTRA_PORTS_FROM + PORTS_PER_EXTRA_SERVICE * (index - 1) + offset

    def host(self, site: str) -> str:
        """The address a site's servers listen on, as seen from the operator's side."""
        return NETNS_ADDRESSES[site] if self.isolation == "netns" else "127.0.0.1"

    def pg_port(self, site: str, service: str = SERVICE) -> int:
        if service == SERVICE:
            return self.base_port + SITES.index(site)
        return self._extra_port(service, SITES.index(site))

    def drill_port(self, service: str = SERVICE) -> int:
        return self.base_port + 6 if service == SERVICE else self._extra_port(service, 2)

    def sshd_port(self, site: str) -> int:
        return self.base_port + 2 + SITES.index(site)

    def agent_port(self, site: str) -> int:
        return self.base_port + 4 + SITES.index(site)

    def ports(self) -> list[int]:
        ports = [self.pg_port(s, service) for service in self.service_names for s in SITES]
        if self.transport == "ssh":
            ports += [self.sshd_port(s) for s in SITES]
        return ports

    @property
    def root(self) -> Path:
        return Path(self.dir)

    def site_dir(self, site: str) -> Path:
        return self.root / "sites" / site

    def service_dir(self, site: str, service: str = SERVICE) -> Path:
        """Where one service's cluster and file stores live at a site (the first: the site dir itself)."""
        self._extra_index(service)
        return self.site_dir(site) if service == SERVICE else self.site_dir(site) / "services" / service

    def pgdata(self, site: str, service: str = SERVICE) -> Path:
        return self.service_dir(site, service) / "pgdata"

    def pg_log(self, site: str, service: str = SERVICE) -> Path:
        return self.service_dir(site, service) / "postgresql.log"

    def store_dir(self, site: str, store: str, service: str = SERVICE) -> Path:
        return self.service_dir(site, service) / "files" / store

    def slot_name(self, site: str, service: str = SERVICE) -> str:
        return f"dcctl_{site}" if service == SERVICE else f"dcctl_{service}_{site}"

    def database(self, service: str = SERVICE) -> str:
        """Each service's application database is named like the service (the first: massar)."""
        self._extra_index(service)
        return APP_DATABASE if service == SERVICE else service

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

    def app_dsn(self, service: str = SERVICE) -> str:
        """The multi-host DSN of one service's application (every service logs in as APP_USER)."""
        hosts = ",".join(self.host(s) for s in SITES)
        ports = ",".join(str(self.pg_port(s, service)) for s in SITES)
        return (f"host={hosts} port={ports} dbname={self.database(service)} user={APP_USER} "
                f"passfile={self.pgpass} target_session_attrs=read-write connect_timeout=2")
