"""dcctl agent run|hash-password: the long-running process of each site."""
from __future__ import annotations

import logging
import os
import sys

import click

from dcctl.cli.complete import complete_services, complete_sites
from dcctl.cli.context import Context
from dcctl.errors import DcctlError


@click.group()
def agent() -> None:
    """The site agent: /metrics and /healthz for Prometheus, collected in the background."""


@agent.command()
@click.option("--site", shell_complete=complete_sites, required=True, metavar="SITE",
              help="The site this agent runs at (a site name from the config).")
@click.option("-s", "--service", "service_name", shell_complete=complete_services, metavar="NAME",
              help="Only this service [default: every service that has SITE].")
@click.option("--once", is_flag=True, help="Collect once, print the metrics to stdout and exit (no server); exit 1 "
                                           "if a collection failed.")
@click.pass_obj
def run(ctx: Context, site: str, service_name: str | None, once: bool) -> None:
    """Serve /metrics and /healthz on the site's `agent.listen`.

    Every `agent.interval` seconds the agent asks both sites (each bounded by `site_timeout`)
    and runs the checks; a scrape only reads the last result, so it answers at once even when
    the peer is dead. Values older than 2 x interval + site_timeout are withheld and /healthz
    answers 503. One log line per event on stderr; SIGTERM or SIGINT stop it cleanly (exit 0).
    """
    from dcctl.agent.daemon import Agent, run_until_signalled
    from dcctl.agent.setup import resolve

    ctx.config.require_site(site, service_name)
    _setup_logging(ctx.verbose)
    setup = resolve(ctx.config, site, service_name)
    agent_ = Agent(setup)
    if once:
        ok, text = agent_.collect_once()
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
        if not ok:
            raise DcctlError("a collection failed; its error is logged above", hint="rerun with -v for the detail")
        return
    _warn_store_owners(setup)
    run_until_signalled(agent_)


@agent.command("hash-password")
@click.option("--rounds", type=click.IntRange(4, 16), default=12, show_default=True, help="bcrypt cost.")
def hash_password(rounds: int) -> None:
    """Print the bcrypt hash to put in `agent.basic_auth_password_hash`.

    Reads the password from the first line of stdin when stdin is not a terminal; otherwise
    asks for it twice without echoing it.
    """
    from dcctl.agent.auth import hash_password as make_hash

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise click.UsageError("the password is empty")
    click.echo(make_hash(password, rounds))


def _warn_store_owners(setup) -> None:
    """Say at start, in the background (the sites may be slow to answer), which file stores every
    switchover would fail to verify because the receiver cannot keep their owners."""
    import threading

    from dcctl.filesync.owners import with_site_transports

    def inspect():
        log = logging.getLogger("dcctl.agent")
        for name in setup.services:
            try:
                for warning in with_site_transports(name, setup.config.services[name]):
                    log.warning(warning)
            except Exception as exc:  # a warning must never stop the agent
                log.warning(f"service {name}: cannot inspect the owners in its file stores: {exc}")

    threading.Thread(target=inspect, name="store-owners", daemon=True).start()


def _setup_logging(verbose: int) -> None:
    """One line per event on stderr; under systemd (JOURNAL_STREAM set) journald adds the time."""
    handler = logging.StreamHandler(sys.stderr)
    timestamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    handler.setFormatter(logging.Formatter(timestamp + "%(levelname)s dcctl agent: %(message)s"))
    logger = logging.getLogger("dcctl.agent")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
