"""Which services one agent serves, and with which settings (pure)."""
from __future__ import annotations

from dataclasses import dataclass

from dcctl.config.schema import AgentConfig, Config
from dcctl.errors import ConfigError


@dataclass(frozen=True)
class AgentSetup:
    config: Config
    site: str
    services: tuple[str, ...]  # every service this agent reports on
    agent: AgentConfig  # the shared settings of this site's agent
    key_path: str  # where `agent` sits in the config, for error messages

    def describe(self) -> str:
        auth = "on" if self.agent.basic_auth_username else "off"
        tls = "on" if self.agent.tls_cert_file else "off"
        return (f"site {self.site}, service(s) {', '.join(self.services)}, interval {self.agent.interval:g} s, "
                f"tls {tls}, basic auth {auth}")


def resolve(config: Config, site: str, service: str | None = None) -> AgentSetup:
    """The services that have `site` (or just `service`), which must agree on the agent settings.

    load.py already refuses two services whose sites share an agent address with different
    settings; sites on different addresses need one agent each, chosen with --service.
    """
    if service is not None:
        name, _ = config.service(service)
        names = [name]
    else:
        names = [name for name, svc in config.services.items() if site in svc.sites]
    if not names or site not in config.services[names[0]].sites:
        known = sorted({s for svc in config.services.values() for s in svc.sites})
        scope = f"service {service}" if service else "any service"
        raise ConfigError([f"{config.source}: no site named {site!r} in {scope}; configured sites: "
                           f"{', '.join(known)}"])
    agents = {name: config.services[name].sites[site].agent for name in names}
    first = agents[names[0]]
    differing = [name for name, agent in agents.items() if agent != first]
    if differing:
        raise ConfigError([f"{config.source}: services {names[0]} and {differing[0]} configure different agents "
                           f"for site {site} ({first.listen} and {agents[differing[0]].listen})"],
                          hint="run one agent per service: dcctl agent run --site SITE --service NAME")
    return AgentSetup(config=config, site=site, services=tuple(names), agent=first,
                      key_path=f"services.{names[0]}.sites.{site}.agent")
