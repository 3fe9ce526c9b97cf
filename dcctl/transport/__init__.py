"""Open the transport a site's config names. ssh (paramiko) is imported only when used."""
from __future__ import annotations

from dcctl.config.schema import LocalTransportConfig, SiteConfig
from dcctl.transport.base import Completed, Transport


def open_transport(site_name: str, site: SiteConfig) -> Transport:
    config = site.transport
    if isinstance(config, LocalTransportConfig):
        from dcctl.transport.local import LocalTransport

        return LocalTransport(site_name, run_as=config.run_as)
    from dcctl.transport.ssh import SshTransport

    return SshTransport(site_name, config)


__all__ = ["Completed", "Transport", "open_transport"]
