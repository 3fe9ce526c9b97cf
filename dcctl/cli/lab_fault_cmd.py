"""dcctl lab fault ...: inject and heal the faults of the fault-injection tests by hand.

Network faults need a netns lab (`lab up --isolation netns`, root); freezing and killing a site's
PostgreSQL work on any lab. What is frozen is remembered in DIR/faults.json, so that `thaw` and
`heal` send SIGCONT to exactly the PIDs `freeze` stopped."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import click

from dcctl.cli.lab_options import dir_option
from dcctl.errors import RefusedError

SITE = click.option("--site", required=True, metavar="SITE", help="The site (rabat or backup).")


def _lab(directory: str, *, network: bool = False):
    from dcctl.lab.lab import open_lab

    lab = open_lab(directory)
    if network and lab.spec.isolation != "netns":
        raise RefusedError(f"the lab in {directory} is not in network namespaces: network faults need one",
                           hint="dcctl lab down, then dcctl lab up --isolation netns (as root)")
    return lab


def _site(lab, site: str) -> str:
    from dcctl.lab.layout import SITES

    if site not in SITES:
        raise click.UsageError(f"no site {site!r} in the lab; sites: {', '.join(SITES)}")
    return site


def parse_port(lab, text: str) -> int:
    """A port number, or pg:SITE / ssh:SITE for that site's PostgreSQL or sshd port."""
    kind, _, site = text.partition(":")
    if text.isdigit():
        return int(text)
    if kind == "pg" and site:
        return lab.spec.pg_port(_site(lab, site))
    if kind == "ssh" and site:
        return lab.spec.sshd_port(_site(lab, site))
    raise click.BadParameter(f"{text!r}: expected a port number, pg:SITE or ssh:SITE", param_hint="--port")


def _postmaster(lab, site: str) -> int:
    pid = lab.running(_site(lab, site))
    if not pid:
        raise RefusedError(f"PostgreSQL at site {site} is not running", hint="dcctl lab up starts it")
    return pid


def _frozen_file(lab) -> Path:
    return lab.spec.root / "faults.json"


def _frozen(lab) -> dict[str, list[int]]:
    path = _frozen_file(lab)
    return json.loads(path.read_text()) if path.exists() else {}


def _save_frozen(lab, frozen: dict[str, list[int]]) -> None:
    path = _frozen_file(lab)
    if frozen:
        path.write_text(json.dumps(frozen) + "\n")
    else:
        path.unlink(missing_ok=True)


@click.group()
def fault() -> None:
    """Inject faults into the lab (partitions, frozen or killed servers) and heal them."""


@fault.command()
@dir_option
@SITE
def isolate(directory: str, site: str) -> None:
    """Cut SITE off from everyone but the application servers' namespace (a split brain)."""
    from dcctl.lab import netfaults

    lab = _lab(directory, network=True)
    netfaults.isolate(_site(lab, site))
    click.echo(f"site {site}: only the application servers (198.18.3.1) reach it")


@fault.command()
@dir_option
@SITE
def cut(directory: str, site: str) -> None:
    """Take SITE's link down: nothing in or out; its servers keep running."""
    from dcctl.lab import netfaults

    lab = _lab(directory, network=True)
    netfaults.cut_site(_site(lab, site))
    click.echo(f"site {site}: link down")


@fault.command("cut-port")
@dir_option
@SITE
@click.option("--port", "port_text", required=True, metavar="PORT",
              help="A port number, pg:SITE (e.g. pg:rabat, the replication link seen from the standby) or "
                   "ssh:SITE (the transport dcctl uses).")
def cut_port(directory: str, site: str, port_text: str) -> None:
    """Drop SITE's TCP traffic to and from one port, both directions."""
    from dcctl.lab import netfaults

    lab = _lab(directory, network=True)
    port = parse_port(lab, port_text)
    netfaults.cut_port(_site(lab, site), port)
    click.echo(f"site {site}: TCP to and from port {port} dropped")


@fault.command()
@dir_option
@SITE
@click.option("--direction", type=click.Choice(["in", "out"]), required=True)
@click.option("--port", "port_text", metavar="PORT", help="Only this port (number, pg:SITE or ssh:SITE).")
def drop(directory: str, site: str, direction: str, port_text: str | None) -> None:
    """Drop one direction of SITE's TCP traffic (all of it, or one port's)."""
    from dcctl.lab import netfaults

    lab = _lab(directory, network=True)
    port = parse_port(lab, port_text) if port_text else None
    netfaults.drop(_site(lab, site), direction, port)
    click.echo(f"site {site}: TCP {direction}" + (f" on port {port}" if port else "") + " dropped")


@fault.command()
@dir_option
@SITE
def freeze(directory: str, site: str) -> None:
    """SIGSTOP SITE's postmaster and all its processes (a hung host)."""
    from dcctl.lab.faults import freeze_tree

    lab = _lab(directory)
    pid = _postmaster(lab, site)
    frozen = _frozen(lab)
    frozen[site] = sorted(set(frozen.get(site, [])) | set(freeze_tree(pid)))
    _save_frozen(lab, frozen)
    click.echo(f"site {site}: {len(frozen[site])} process(es) of postmaster {pid} frozen")


@fault.command()
@dir_option
@SITE
def thaw(directory: str, site: str) -> None:
    """SIGCONT what `freeze` stopped at SITE."""
    lab = _lab(directory)
    click.echo(f"site {site}: {_thaw(lab, _site(lab, site))} process(es) thawed")


def _thaw(lab, site: str) -> int:
    from dcctl.lab.faults import thaw as send_cont

    frozen = _frozen(lab)
    pids = frozen.pop(site, [])
    send_cont(pids)
    _save_frozen(lab, frozen)
    return len(pids)


@fault.command()
@dir_option
@SITE
def kill(directory: str, site: str) -> None:
    """kill -9 SITE's postmaster (its children exit on their own)."""
    lab = _lab(directory)
    pid = _postmaster(lab, site)
    os.kill(pid, signal.SIGKILL)
    click.echo(f"site {site}: postmaster {pid} killed (SIGKILL)")


@fault.command()
@dir_option
@click.option("--site", default=None, metavar="SITE", help="Only this site (default: every site).")
def heal(directory: str, site: str | None) -> None:
    """Undo every fault: links up, rules removed, processes thawed."""
    from dcctl.lab import netfaults
    from dcctl.lab.layout import SITES

    lab = _lab(directory)
    for name in [_site(lab, site)] if site else list(SITES):
        if lab.spec.isolation == "netns":
            netfaults.heal(name)
        thawed = _thaw(lab, name)
        click.echo(f"site {name}: healed" + (f", {thawed} process(es) thawed" if thawed else ""))


@fault.command("list")
@dir_option
def list_faults(directory: str) -> None:
    """The faults in place: each site's rules, link state and frozen processes."""
    from dcctl.lab import netfaults, netns
    from dcctl.lab.layout import SITES

    lab = _lab(directory)
    frozen = _frozen(lab)
    for site in SITES:
        parts = []
        if lab.spec.isolation == "netns":
            link = netns.ip("-o", "link", "show", "dev", netns.host_veth(site), check=False).stdout
            parts.append("link down" if "state DOWN" in link or ",UP" not in link else "link up")
            rules = [line.strip() for line in netfaults.rules(site).splitlines() if "drop" in line]
            parts += rules or ["no rules"]
        if frozen.get(site):
            parts.append(f"frozen: {', '.join(map(str, frozen[site]))}")
        click.echo(f"{site}: " + ("; ".join(parts) or "no fault"))
