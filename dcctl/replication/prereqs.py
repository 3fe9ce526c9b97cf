"""`dcctl replication check-prereqs`: what a standby, a later failover and a rewind need, on
both sites, each reported OK or with the exact line to change and where."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from dcctl.checks.catalog import readiness_problems
from dcctl.checks.result import CheckResult, Status
from dcctl.config.schema import Config, PostgresConfig, ServiceConfig
from dcctl.errors import DcctlError
from dcctl.parallel import run_all
from dcctl.pg import queries
from dcctl.pg.session import connect
from dcctl.transport import open_transport
from dcctl.units import human_bytes

OK, WARN, CRIT, UNKNOWN = Status.OK, Status.WARN, Status.CRIT, Status.UNKNOWN

SPACE_MARGIN = 1.10


@dataclass(frozen=True)
class HbaRule:
    line: int
    type: str
    database: tuple[str, ...]
    user_name: tuple[str, ...]
    address: str | None
    netmask: str | None
    auth_method: str | None
    error: str | None = None


def hba_rule_for_replication(rules: list[HbaRule], user: str, client: str) -> tuple[HbaRule | None, str | None]:
    """The first pg_hba rule a replication connection of `user` from `client` hits (pg_hba is first match).

    Returns (rule, None), (None, None) when nothing matches, or (None, why) when it cannot be told.

    >>> rules = [HbaRule(1, "local", ("all",), ("all",), None, None, "peer"),
    ...          HbaRule(2, "host", ("all",), ("all",), "10.0.0.0", "255.0.0.0", "scram-sha-256"),
    ...          HbaRule(3, "host", ("replication",), ("replicator",), "10.20.0.0", "255.255.0.0", "scram-sha-256")]
    >>> hba_rule_for_replication(rules, "replicator", "10.20.0.11")[0].line
    3
    >>> hba_rule_for_replication(rules, "replicator", "10.30.0.11")
    (None, None)
    """
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return None, f"{client} is a host name; pg_hba matching is checked for IP addresses only"
    for rule in rules:
        if rule.error or not rule.type.startswith("host"):
            continue
        if "replication" not in rule.database:
            continue  # "all" does not cover replication connections
        if "all" not in rule.user_name and user not in rule.user_name:
            continue
        if rule.address in ("all", "samehost", "samenet"):
            return rule, None
        if rule.address is None:
            continue
        try:
            network = ipaddress.ip_network(f"{rule.address}/{rule.netmask}" if rule.netmask else rule.address,
                                           strict=False)
        except ValueError:
            return None, f"pg_hba line {rule.line} names host {rule.address}; check it by hand"
        if address.version == network.version and address in network:
            return rule, None
    return None, None


def evaluate_node(site: str, peer_site: str, peer_host: str, node: PostgresConfig, row: dict[str, Any],
                  ) -> list[CheckResult]:
    """Pure: settings, replication role and pg_hba of one node."""
    results = []
    conf = row["config_file"]
    problems = readiness_problems(row["settings"] or {})
    if problems:
        for problem in problems:
            results.append(CheckResult("settings", WARN, f"{problem}; in {conf} (or ALTER SYSTEM)", site))
    else:
        results.append(CheckResult("settings", OK, "wal_level, max_wal_senders, max_replication_slots, hot_standby "
                                                   "and wal_log_hints/data checksums are ready", site))
    role = row["replication_role"]
    user = node.replication_user
    if role and role["replication"] and role["login"]:
        results.append(CheckResult("replication_role", OK, f"role {user} has REPLICATION and LOGIN", site))
    else:
        fix = (queries.FIX_CREATE_REPLICATION_ROLE if not role else queries.FIX_ALTER_REPLICATION_ROLE).format(
            user=user)
        state = "missing" if not role else "not a replication login"
        results.append(CheckResult("replication_role", CRIT, f"role {user} is {state}: run `{fix}` on the primary, "
                                   f"and put the password in the standby site's password file", site))
    rules = [HbaRule(r["line"], r["type"], tuple(r["database"] or ()), tuple(r["user_name"] or ()), r["address"],
                     r["netmask"], r["auth_method"], r["error"]) for r in row["hba_rules"] or ()]
    rule, unsure = hba_rule_for_replication(rules, user, peer_host)
    add_line = f"host replication {user} {peer_host}/32 scram-sha-256"
    if unsure:
        results.append(CheckResult("pg_hba", WARN, f"{unsure} ({row['hba_file']})", site))
    elif rule is None:
        results.append(CheckResult("pg_hba", CRIT, f"no rule in {row['hba_file']} admits replication connections of "
                                   f"{user} from {peer_site} ({peer_host}): add `{add_line}` before any other "
                                   f"matching line, then SELECT pg_reload_conf()", site))
    elif rule.auth_method == "reject":
        results.append(CheckResult("pg_hba", CRIT, f"{row['hba_file']} line {rule.line} rejects replication from "
                                   f"{peer_site} ({peer_host}): put `{add_line}` above it, then SELECT "
                                   f"pg_reload_conf()", site))
    else:
        results.append(CheckResult("pg_hba", OK, f"{row['hba_file']} line {rule.line} admits replication of {user} "
                                   f"from {peer_site} ({peer_host}) with {rule.auth_method}", site))
    return results


def space_result(site: str, free: int | None, needed: int, path: str) -> CheckResult:
    if free is None:
        return CheckResult("disk_space", UNKNOWN, f"cannot measure free space near {path}", site)
    status = OK if free >= needed else CRIT
    return CheckResult("disk_space", status, f"{human_bytes(free)} free near {path}; a full copy needs about "
                       f"{human_bytes(needed)}", site, free, f">= {human_bytes(needed)}")


def gather_prereqs(config: Config, service_name: str, service: ServiceConfig) -> list[CheckResult]:
    from dcctl.replication.init import observe_target

    names = list(service.sites)
    peer = {names[0]: names[1], names[1]: names[0]}
    calls = {}
    transports = {name: open_transport(name, site) for name, site in service.sites.items()}
    for name, site in service.sites.items():
        node = site.postgres

        def query(node=node, name=name):
            with connect(node, "check-prereqs", name) as conn:
                return conn.execute(queries.REPLICATION_PREREQS, (node.replication_user,)).fetchone()

        def tools(node=node, name=name):
            found = transports[name].run(["ls", "-1", node.bin_dir], timeout=30)
            return set(found.stdout.split()) if found.ok else set()

        calls[(name, "pg")] = query
        calls[(name, "tools")] = tools
        calls[(name, "target")] = lambda name=name, node=node: observe_target(transports[name], node)
    outcomes = run_all(calls, deadline=config.site_timeout * 3)
    results: list[CheckResult] = []
    sizes = [o.value["size"] for (n, kind), o in outcomes.items() if kind == "pg" and o.ok]
    size = max(sizes or [0])
    for name, site in service.sites.items():
        pg, tools_found, target = outcomes[(name, "pg")], outcomes[(name, "tools")], outcomes[(name, "target")]
        other = peer[name]
        if pg.ok:
            results += evaluate_node(name, other, service.sites[other].postgres.host, site.postgres, pg.value)
        elif target.ok and (not target.value.data_dir_exists or target.value.data_dir_empty):
            results.append(CheckResult("settings", OK, f"no data directory yet at {site.postgres.data_dir} "
                                       f"(fine before `dcctl replication init`)", name))
        else:
            why = pg.error.message if isinstance(pg.error, DcctlError) else "no answer"
            results.append(CheckResult("settings", UNKNOWN, f"cannot read settings: {why}", name))
        if tools_found.ok:
            missing = {"pg_basebackup", "pg_rewind", "pg_ctl", "pg_controldata"} - tools_found.value
            results.append(CheckResult("tools", CRIT if missing else OK,
                                       f"missing in {site.postgres.bin_dir}: {', '.join(sorted(missing))}" if missing
                                       else f"pg_basebackup, pg_rewind, pg_ctl, pg_controldata in {site.postgres.bin_dir}",
                                       name))
        else:
            results.append(CheckResult("tools", UNKNOWN, f"site {name} did not answer: {tools_found.error}", name))
        if target.ok:
            results.append(space_result(name, target.value.free_bytes, int(size * SPACE_MARGIN),
                                        site.postgres.data_dir))
    for transport in transports.values():
        transport.close()
    return results
