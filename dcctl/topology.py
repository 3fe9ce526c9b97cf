"""Gather a ServiceView: every site asked at once, each bounded by the site deadline."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from dcctl.checks.disk import df_argv, parse_df, site_volumes
from dcctl.config.schema import Config, ServiceConfig, SiteConfig
from dcctl.errors import DcctlError
from dcctl.model import DiskUsage, ServiceView, SiteStatus
from dcctl.parallel import Outcome, run_all
from dcctl.pg.probe import probe_node
from dcctl.transport import Transport, open_transport


def gather_view(config: Config, service_name: str, service: ServiceConfig, *, with_disks: bool = False,
                keep_connections: dict | None = None, purpose: str = "status") -> ServiceView:
    """Probe both sites in parallel: transport (and, with_disks, one `df` and the file-sync status
    there) and PostgreSQL. keep_connections: receives the PostgreSQL connections, open, by site."""
    transports = {name: open_transport(name, site) for name, site in service.sites.items()}
    calls = {}
    for name, site in service.sites.items():
        if with_disks:
            calls[(name, "transport")] = lambda t=transports[name], s=site: site_volumes_and_sync(t, s, service_name)
        else:
            calls[(name, "transport")] = transports[name].connect
        calls[(name, "postgres")] = lambda site=site, name=name: probe_node(site.postgres, name, purpose,
                                                                            keep_connections)
    outcomes = run_all(calls, deadline=config.site_timeout)
    sites = []
    for name, site in service.sites.items():
        reach, pg = outcomes[(name, "transport")], outcomes[(name, "postgres")]
        status = SiteStatus(
            site=name, transport=transports[name].description,
            reachable=None if reach.timed_out else reach.ok,
            transport_error=_why(reach, config.site_timeout),
            postgres=f"{site.postgres.host}:{site.postgres.port}",
            node=pg.value if pg.ok else None, postgres_error=_why(pg, config.site_timeout),
        )
        if with_disks and reach.ok:
            disks, filesync = reach.value
            status = replace(status, disks=disks, filesync=filesync)
        sites.append(status)
    for name, transport in transports.items():
        if outcomes[(name, "transport")].ok:
            transport.close()
    return ServiceView(service=service_name, sites=tuple(sites), taken_at=datetime.now(timezone.utc))


def disk_usage(transport: Transport, site: SiteConfig) -> tuple[DiskUsage, ...]:
    volumes = site_volumes(site)
    result = transport.run(df_argv([path for _, path in volumes]), timeout=10)
    return parse_df(result.stdout, result.stderr, volumes)


def site_volumes_and_sync(transport: Transport, site: SiteConfig, service: str):
    """One df at the site and, when it has file stores, the file-sync status its agent wrote there."""
    disks = disk_usage(transport, site)
    if not site.file_stores:
        return disks, None
    from dcctl.filesync.engine import read_status

    try:
        return disks, read_status(transport, site.state_dir, service)
    except DcctlError:
        return disks, None


def _why(outcome: Outcome, deadline: float) -> str | None:
    if outcome.timed_out:
        return f"no answer within {deadline:g} s (site_timeout)"
    if outcome.error is None:
        return None
    if isinstance(outcome.error, DcctlError):
        return outcome.error.message
    return f"{type(outcome.error).__name__}: {outcome.error}"
