"""dcctl lab up|down|status|env: a complete two-site setup on this machine."""
from __future__ import annotations

import shlex

import click

from dcctl.cli.context import Context, output_option
from dcctl.cli.output import console, print_json
from dcctl.lab.layout import DEFAULT_BASE_PORT, MAX_SERVICES

from dcctl.cli.lab_fault_cmd import fault
from dcctl.cli.lab_options import dir_option


def say(message: str) -> None:
    click.echo(f"lab: {message}", err=True)


@click.group()
def lab() -> None:
    """Two real PostgreSQL 15 servers with streaming replication, on loopback."""


lab.add_command(fault)


@lab.command()
@dir_option
@click.option("--base-port", type=click.IntRange(1024, 65000), default=DEFAULT_BASE_PORT, show_default=True,
              help="Primary on N, standby on N+1, sshd on N+2/N+3, agents on N+4/N+5.")
@click.option("--transport", type=click.Choice(["local", "ssh"]), default=None,
              help="How the generated config reaches the sites; ssh starts one private sshd per site. "
                   "Default: local, or ssh with --isolation netns.")
@click.option("--isolation", type=click.Choice(["none", "netns"]), default="none", show_default=True,
              help="netns (root only): each site in its own network namespace with its own address "
                   "from 198.18.0.0/15, reached over a bridge from this (the operator's) namespace.")
@click.option("--services", type=click.IntRange(1, MAX_SERVICES), default=1, show_default=True,
              help="Services to create: massar, identity, portal, archives, service5, ...; each has its own "
                   "PostgreSQL cluster at each site (extra services from port N+10, three ports each), "
                   "database and file store.")
@click.option("--poolers", is_flag=True, help="Also start one PgBouncer per site (transaction pooling, in front "
              "of the first service's database), listed in the config as the service's poolers.")
@click.option("--dry-run", is_flag=True, help="Print what would be created and exit.")
def up(directory: str, base_port: int, transport: str | None, isolation: str, services: int, poolers: bool,
       dry_run: bool) -> None:
    """Create (or restart) the lab in DIR. Idempotent."""
    from dcctl.lab.lab import Lab
    from dcctl.lab.layout import LabSpec

    transport = transport or ("ssh" if isolation == "netns" else "local")
    if dry_run:
        spec = LabSpec(dir=directory, base_port=base_port, transport=transport, user="-", bin_dir="-",
                       isolation=isolation, services=services)
        for name in spec.service_names:
            what = "a lab" if services == 1 else f"service {name}"
            click.echo(f"would create {what} in {directory}: primary {spec.host('rabat')}:"
                       f"{spec.pg_port('rabat', name)} (site rabat), standby {spec.host('backup')}:"
                       f"{spec.pg_port('backup', name)} (site backup), transport {transport}"
                       + (f", sshd on {base_port + 2} and {base_port + 3}" if transport == "ssh" else "")
                       + (", each site in its own network namespace" if isolation == "netns" else ""))
        return
    lab_ = Lab.up(directory, base_port=base_port, transport=transport, progress=say, isolation=isolation,
                  services=services)
    if poolers:
        from dcctl.lab import pgbouncer

        pgbouncer.enable(lab_)
    click.echo(f"export DCCTL_CONFIG={shlex.quote(str(lab_.spec.config_path))}")


@lab.command()
@dir_option
@click.option("--dry-run", is_flag=True, help="Print what would be stopped and removed, and exit.")
def down(directory: str, dry_run: bool) -> None:
    """Stop every lab process and remove DIR."""
    from dcctl.lab.lab import lab_down, read_spec

    if dry_run:
        spec = read_spec(directory)
        click.echo(f"would stop the lab's servers and remove {directory}" if spec else f"no lab in {directory}")
        return
    if not lab_down(directory, progress=say):
        say(f"no lab in {directory}; nothing to do")


@lab.command("status")
@dir_option
@output_option
@click.pass_obj
def lab_status(ctx: Context, directory: str) -> None:
    """Processes, ports and paths of the lab."""
    from dcctl.lab.lab import open_lab

    info = open_lab(directory).status()
    if ctx.output == "json":
        print_json(info)
        return
    from rich.table import Table

    isolation = ", sites in network namespaces" if info.get("isolation") == "netns" else ""
    table = Table(title=f"lab {info['dir']} ({info['transport']} transport{isolation}, servers run as {info['user']})",
                  title_justify="left")
    several = len(info["services"]) > 1
    for column in (("service",) if several else ()) + ("site", "postgres", "pid", "sshd", "data dir"):
        table.add_column(column)
    for service, service_info in info["services"].items():
        for site, entry in service_info["sites"].items():
            state = "[green]up[/]" if entry["postgres_pid"] else "[red]down[/]"
            pg = f"{entry.get('address', '127.0.0.1')}:{entry['postgres_port']} {state}"
            sshd = "-"
            if "sshd_port" in entry:
                sshd = f"{entry['sshd_port']} " + ("[green]up[/]" if entry["sshd_pid"] else "[red]down[/]")
            row = [site, pg, str(entry["postgres_pid"] or "-"), sshd, entry["data_dir"]]
            table.add_row(*(([service] if several else []) + row))
    out = console()
    out.print(table)
    out.print(f"config: {info['config']}")
    for service, service_info in info["services"].items():
        label = f"DSN ({service}):" if several else "DSN:   "
        out.print(f"{label} {service_info['dsn']}", soft_wrap=True)


@lab.command()
@dir_option
@output_option
@click.pass_obj
def env(ctx: Context, directory: str) -> None:
    """Print DCCTL_CONFIG and a multi-host DSN for applications: eval "$(dcctl lab env)"."""
    from dcctl.lab.lab import open_lab

    spec = open_lab(directory).spec
    variables = {"DCCTL_CONFIG": str(spec.config_path), "DCCTL_LAB_DSN": spec.app_dsn()}
    for service in spec.service_names[1:]:  # the first service's DSN is DCCTL_LAB_DSN, as it always was
        variables[f"DCCTL_LAB_DSN_{service.upper()}"] = spec.app_dsn(service)
    if ctx.output == "json":
        print_json(variables)
        return
    for name, value in variables.items():
        click.echo(f"export {name}={shlex.quote(value)}")


@lab.command()
@click.option("--dir", "directory", metavar="DIR", default="/tmp/dcctl-demo", show_default=True)
@click.option("--base-port", type=click.IntRange(1024, 65000), default=DEFAULT_BASE_PORT, show_default=True)
def demo(directory: str, base_port: int) -> None:
    """The whole story: lab up, status, check, drills, a switchover round trip under load, lab down."""
    from dcctl.lab.demo import run

    run(directory, base_port)
