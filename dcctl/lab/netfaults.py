"""Network faults for a lab whose sites are in network namespaces (`lab up --isolation netns`).

    cut_site(site)                  the site's link goes down: nothing in or out
    drop(site, "out", port=25430)   the site's packets to or from TCP port 25430 are dropped
    isolate(site)                   only the application servers still reach the site (split brain)
    heal(site)                      link up and every rule of ours in the site removed

Rules live in an nftables table `inet dcctl_faults` inside the site's namespace: nothing is
changed in the operator's (root) namespace, and `lab down` deletes them with the namespace.
Root only, like the namespaces themselves.
"""
from __future__ import annotations

import shutil
import subprocess

from dcctl.errors import LabError
from dcctl.lab import netns

TABLE = "dcctl_faults"
HOOKS = {"in": "input", "out": "output"}


def cut_site(site: str) -> None:
    """Take the site's link down (from the operator's side): its servers keep running, unreachable."""
    netns.ip("link", "set", netns.host_veth(site), "down")


def restore_site(site: str) -> None:
    netns.ip("link", "set", netns.host_veth(site), "up")


def drop(site: str, direction: str, port: int | None = None) -> None:
    """Drop TCP packets entering ("in") or leaving ("out") the site, only those to or from `port`
    when given (e.g. the primary's PostgreSQL port: the replication link), else all of them."""
    if direction not in HOOKS:
        raise LabError(f"direction must be one of {', '.join(HOOKS)}, not {direction!r}")
    chain = HOOKS[direction]
    _nft(site, "add", "table", "inet", TABLE)
    _nft(site, "add", "chain", "inet", TABLE, chain,
         f"{{ type filter hook {chain} priority 0 ; policy accept ; }}")
    if port is None:
        _nft(site, "add", "rule", "inet", TABLE, chain, "meta", "l4proto", "tcp", "drop")
        return
    for field in ("dport", "sport"):
        _nft(site, "add", "rule", "inet", TABLE, chain, "tcp", field, str(port), "drop")


def isolate(site: str, *, except_from: tuple[str, ...] = (netns.APP_ADDRESS,)) -> None:
    """Cut the site off from everyone on the lab network but `except_from` (the application
    servers by default): the classic split brain, where the clients still reach an old primary
    that its peer and the operator no longer see. Traffic inside the site (its loopback, its own
    address) is untouched."""
    _nft(site, "add", "table", "inet", TABLE)
    for direction, chain in HOOKS.items():
        _nft(site, "add", "chain", "inet", TABLE, chain,
             f"{{ type filter hook {chain} priority 0 ; policy accept ; }}")
        device, peer = ("iifname", "saddr") if direction == "in" else ("oifname", "daddr")
        allowed = "{ " + ", ".join(except_from) + " }"
        _nft(site, "add", "rule", "inet", TABLE, chain, device, netns.SITE_IFACE, "ip", peer, "!=", allowed, "drop")


def cut_port(site: str, port: int) -> None:
    """Both directions of every TCP connection of the site to or from `port`."""
    for direction in HOOKS:
        drop(site, direction, port)


def clear_rules(site: str) -> None:
    if _nft(site, "list", "table", "inet", TABLE, check=False).returncode == 0:
        _nft(site, "delete", "table", "inet", TABLE)


def rules(site: str) -> str:
    """The site's fault rules as nft prints them ('' when there are none)."""
    listed = _nft(site, "list", "table", "inet", TABLE, check=False)
    return listed.stdout if listed.returncode == 0 else ""


def heal(site: str) -> None:
    clear_rules(site)
    restore_site(site)


def _nft(site: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    if shutil.which("nft") is None:
        raise LabError("nft is not installed", hint="run scripts/setup.sh (it installs nftables)")
    proc = subprocess.run([*netns.exec_prefix(site), "nft", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise LabError(f"nft {' '.join(args)} in {netns.namespace(site)} failed: "
                       f"{(proc.stderr or proc.stdout).strip()}")
    return proc
