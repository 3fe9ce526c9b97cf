"""Gather a ServiceView: every site asked at once, each bounded by the site deadline."""
from __future__ import annotations

from datetime import datetime, timezone

from dcctl.config.schema import Config, ServiceConfig
from dcctl.errors import DcctlError
from dcctl.model import ServiceView, SiteStatus
from dcctl.parallel import Outcome, run_all
from dcctl.pg.probe import probe_node
from dcctl.transport import open_transport


def gather_view(config: Config, service_name: str, service: ServiceConfig) -> ServiceView:
    transports = {name: open_transport(name, site) for name, site in service.sites.items()}
    calls = {}
    for name, site in service.sites.items():
        calls[(name, "transport")] = transports[name].connect
        calls[(name, "postgres")] = lambda site=site, name=name: probe_node(site.postgres, name)
    outcomes = run_all(calls, deadline=config.site_timeout)
    sites = []
    for name, site in service.sites.items():
        reach, pg = outcomes[(name, "transport")], outcomes[(name, "postgres")]
        sites.append(SiteStatus(
            site=name, transport=transports[name].description,
            reachable=None if reach.timed_out else reach.ok,
            transport_error=_why(reach, config.site_timeout),
            postgres=f"{site.postgres.host}:{site.postgres.port}",
            node=pg.value if pg.ok else None, postgres_error=_why(pg, config.site_timeout),
        ))
    for name, transport in transports.items():
        if outcomes[(name, "transport")].ok:
            transport.close()
    return ServiceView(service=service_name, sites=tuple(sites), taken_at=datetime.now(timezone.utc))


def _why(outcome: Outcome, deadline: float) -> str | None:
    if outcome.timed_out:
        return f"no answer within {deadline:g} s (site_timeout)"
    if outcome.error is None:
        return None
    if isinstance(outcome.error, DcctlError):
        return outcome.error.message
    return f"{type(outcome.error).__name__}: {outcome.error}"
