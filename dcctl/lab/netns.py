"""The network of a lab whose sites are hosts (`dcctl lab up --isolation netns`, root only).

Each site gets a network namespace `dcctl-<site>` holding its loopback and one end of a veth
pair, named `lab0`, with the site's address. The other ends hang on a bridge `dcctl-br0` in the
root namespace, which is the operator's side (dcctl, the tests' writer) and holds 198.18.0.1.
All addresses come from 198.18.0.0/15 (reserved for network benchmarks); no namespace gets a
default route, so lab traffic cannot leave the lab. Sites reach each other over the bridge
(layer 2), so nothing is routed or forwarded in the root namespace.

Only one netns lab can exist at a time on a machine: the names and addresses are fixed.
"""
from __future__ import annotations

import os
import shutil
import subprocess

from dcctl.errors import LabError, RefusedError
from dcctl.lab.layout import NETNS_ADDRESSES as SITE_ADDRESSES
from dcctl.lab.layout import NETNS_OPERATOR_ADDRESS as OPERATOR_ADDRESS
from dcctl.lab.layout import NETNS_PREFIX_LEN as PREFIX_LEN
BRIDGE = "dcctl-br0"
SITE_IFACE = "lab0"  # the site's end of its veth pair, inside its namespace
# The application servers: a third namespace, on the bridge like the sites, from which the tests'
# clients reach a site's address the way applications do, while the operator's side is cut off.
APP_HOST = "app"
APP_ADDRESS = "198.18.3.1"


def namespace(site: str) -> str:
    return f"dcctl-{site}"


def host_veth(site: str) -> str:
    """The operator's end of the site's veth pair (interface names are at most 15 characters)."""
    return f"dcv-{site}"[:15]


def site_address(site: str) -> str:
    if site == APP_HOST:
        return APP_ADDRESS
    try:
        return SITE_ADDRESSES[site]
    except KeyError:
        raise LabError(f"no lab address for site {site}") from None


def exec_prefix(site: str) -> list[str]:
    """Run what follows inside the site's namespace."""
    return ["ip", "netns", "exec", namespace(site)]


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise LabError(f"ip {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


def require_netns() -> None:
    """Refuse clearly when this process cannot create namespaces."""
    if os.geteuid() != 0:
        raise RefusedError("--isolation netns needs root (it creates network namespaces, veth pairs and a bridge)",
                           hint="run `dcctl lab up --isolation netns` as root, or leave out --isolation")
    if shutil.which("ip") is None:
        raise RefusedError("--isolation netns needs the `ip` command (iproute2)", hint="run scripts/setup.sh")
    probe = ip("netns", "list", check=False)
    if probe.returncode != 0:
        raise RefusedError(f"`ip netns` does not work here: {probe.stderr.strip()}",
                           hint="network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN")


def namespaces() -> set[str]:
    return {line.split()[0] for line in ip("netns", "list", check=False).stdout.splitlines() if line.strip()}


def link_exists(name: str) -> bool:
    return ip("link", "show", "dev", name, check=False).returncode == 0


def leftovers(sites) -> list[str]:
    """The lab's namespaces and links that exist now (empty once `lab down` has run)."""
    sites = [*sites, APP_HOST]
    found = [ns for ns in (namespace(s) for s in sites) if ns in namespaces()]
    return found + [name for name in [BRIDGE, *(host_veth(s) for s in sites)] if link_exists(name)]


def create_network(sites) -> None:
    existing = leftovers(sites)
    if existing:
        raise RefusedError(f"a netns lab (or its remains) already exists: {', '.join(existing)}",
                           hint="run `dcctl lab down` on that lab first (one netns lab per machine)")
    ip("link", "add", BRIDGE, "type", "bridge")
    ip("addr", "add", f"{OPERATOR_ADDRESS}/{PREFIX_LEN}", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")
    for site in [*sites, APP_HOST]:
        ns = namespace(site)
        ip("netns", "add", ns)
        ip("link", "add", host_veth(site), "type", "veth", "peer", "name", SITE_IFACE, "netns", ns)
        ip("link", "set", host_veth(site), "master", BRIDGE, "up")
        ip("-n", ns, "addr", "add", f"{site_address(site)}/{PREFIX_LEN}", "dev", SITE_IFACE)
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "link", "set", SITE_IFACE, "up")


def remove_network(sites) -> None:
    """Delete the namespaces (which destroys their veth pairs and any nftables rules in them)
    and the bridge. Idempotent; processes must be stopped first."""
    # Veths first: deleting one end removes the pair at once, while a deleted namespace
    # releases its devices asynchronously (a check right after would still see them).
    sites = [*sites, APP_HOST]
    for site in sites:
        _delete_link(host_veth(site))
    present = namespaces()
    for site in sites:
        if namespace(site) in present:
            ip("netns", "del", namespace(site))
    _delete_link(BRIDGE)


def _delete_link(name: str) -> None:
    if link_exists(name):
        gone = ip("link", "del", name, check=False)
        if gone.returncode != 0 and link_exists(name):
            raise LabError(f"ip link del {name} failed: {gone.stderr.strip()}")
