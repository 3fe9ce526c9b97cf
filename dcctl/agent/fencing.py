"""The agent's last line against split brain: its own site's PostgreSQL running as a primary on
an older generation (a failed-over primary that came back) is stopped at once."""
from __future__ import annotations

import logging

from dcctl.agent.setup import AgentSetup
from dcctl.errors import DcctlError
from dcctl.model import ServiceView
from dcctl.ops.generation import Generation, stale_primaries
from dcctl.pg import tools
from dcctl.transport import open_transport

log = logging.getLogger("dcctl.agent")


def fence_if_stale(setup: AgentSetup, service_name: str, view: ServiceView, recorded: Generation | None) -> bool:
    site = setup.site
    if site not in stale_primaries(view, recorded):
        return False
    # Writes accepted here would be lost at the rejoin, or worse, read by clients that reached this
    # site: stopping it now costs nothing that is not already lost.
    node = setup.config.services[service_name].sites[site].postgres
    log.critical("STALE PRIMARY: %s runs as primary on timeline %s while a newer generation exists; stopping it "
                 "(immediate). Rejoin it: dcctl rejoin --site %s", site, view.site(site).node.timeline, site)
    try:
        transport = open_transport(site, setup.config.services[service_name].sites[site])
        transport.run(tools.signal_stop(node.data_dir, "immediate", 30), timeout=40).check("fencing the stale primary")
        transport.close()
    except DcctlError as exc:
        log.critical("could not stop the stale primary at %s: %s", site, exc.message)
        return False
    return True
