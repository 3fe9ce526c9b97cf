"""The agent's last line against split brain: its own site's PostgreSQL, when it runs as a primary
that must not (a failed-over primary that came back, a primary cut off from its peer), is stopped
at once and left with standby.signal, so that any restart brings it back read-only."""
from __future__ import annotations

import logging
import posixpath

from dcctl.agent.setup import AgentSetup
from dcctl.errors import DcctlError
from dcctl.generation_rules import judge_primaries, running_primaries
from dcctl.model import Generation, ServiceView
from dcctl.pg import tools
from dcctl.transport import Transport, open_transport

log = logging.getLogger("dcctl.agent")
STOP_TIMEOUT = 30.0  # seconds an immediate stop may take before the fence is reported as failed


def fence_if_stale(setup: AgentSetup, service_name: str, view: ServiceView, recorded: Generation | None) -> bool:
    why = judge_primaries(running_primaries(view), recorded).stale.get(setup.site)
    if why is None:
        return False
    return stop_own_postgres(setup, service_name, f"STALE PRIMARY: {why}")


def stop_own_postgres(setup: AgentSetup, service_name: str, why: str, transport: Transport | None = None) -> bool:
    """Stop this site's PostgreSQL (immediate, PID-verified) and write standby.signal; True if done.

    `why` is the one sentence the log keeps: which node, and why it must not take writes.
    `transport`, when given, is an open connection to this site kept for this moment (the watch
    holds one, so that a fence does not wait for an SSH handshake); else one is opened.
    """
    # Writes accepted here would be lost at the rejoin, or worse, acknowledged to clients that
    # reached this site: stopping it now costs nothing that is not already lost. Immediate mode:
    # a fast shutdown would wait for those clients and keep acknowledging meanwhile.
    site = setup.site
    log.critical("%s; stopping PostgreSQL at site %s (immediate) and writing standby.signal. Rejoin it: "
                 "dcctl rejoin --site %s", why, site, site)
    if transport is not None:
        try:
            _fence(setup, service_name, transport)
            return True
        except DcctlError as exc:
            log.warning("fencing over the held connection failed (%s); retrying over a new one", exc.message)
    try:
        transport = open_transport(site, setup.config.services[service_name].sites[site])
        try:
            _fence(setup, service_name, transport)
        finally:
            transport.close()
    except DcctlError as exc:
        log.critical("could not fence PostgreSQL at site %s: %s", site, exc.message)
        return False
    return True


def _fence(setup: AgentSetup, service_name: str, transport: Transport) -> None:
    site = setup.site
    node = setup.config.services[service_name].sites[site].postgres
    transport.run(tools.signal_stop(node.data_dir, "immediate", STOP_TIMEOUT),
                  timeout=STOP_TIMEOUT + 10).check(f"fencing PostgreSQL at site {site}")
    if transport.run(["test", "-f", posixpath.join(node.data_dir, "PG_VERSION")], timeout=30).ok:
        transport.write_file(posixpath.join(node.data_dir, "standby.signal"), b"", mode=0o600)
