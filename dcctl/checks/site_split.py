"""The cross-service check `site_split`: every service of the config has its primary in the same
site (pure).

A site operation that stopped half-way (a group rolled back, a crash before `dcctl resume`), or
one service switched on its own, leaves a split datacenter: applications in one site talk to
databases in the other, across the WAN, and losing either site now takes services down that
the plan meant to keep together. The check reads every service's snapshot, so `dcctl check`
evaluates it for each service with the primaries of all of them (Facts.service_primaries).
"""
from __future__ import annotations

from typing import Mapping

from dcctl.checks.result import CheckResult, Status
from dcctl.model import ServiceView

NAME = "site_split"


def primary_site(view: ServiceView) -> str | None:
    """The site of the service's one primary; None when no site, or more than one, accepts writes."""
    primaries = view.primaries()
    return primaries[0].site if len(primaries) == 1 else None


def by_site(primaries: Mapping[str, str | None]) -> dict[str, list[str]]:
    """Site -> the services whose primary is there, the site with most services first.

    >>> by_site({"massar": "rabat", "identity": "rabat", "portal": "backup", "archives": None})
    {'rabat': ['massar', 'identity'], 'backup': ['portal']}
    """
    sites: dict[str, list[str]] = {}
    for service, site in primaries.items():
        if site is not None:
            sites.setdefault(site, []).append(service)
    return dict(sorted(sites.items(), key=lambda item: -len(item[1])))


def describe(sites: dict[str, list[str]]) -> str:
    """Which services are at which site, in one line.

    >>> describe({'rabat': ['massar', 'identity'], 'backup': ['portal']})
    'massar, identity at rabat; portal at backup'
    """
    return "; ".join(f"{', '.join(services)} at {site}" for site, services in sites.items())


def site_split(primaries: Mapping[str, str | None] | None) -> list[CheckResult]:
    """CRIT when the services' primaries are in more than one site, naming which service is where.

    `primaries`: service -> the site of its primary (None: no single primary known, which makes
    this check UNKNOWN for that service unless the known ones already disagree). No result at all
    when the caller does not know the other services (the agent, which watches one service per
    snapshot: its alert DcctlSiteSplit compares dcctl_site_info across services instead).

    >>> [r.status.name for r in site_split({"massar": "rabat"})]
    ['OK']
    >>> r = site_split({"massar": "rabat", "identity": "rabat", "portal": "backup"})[0]
    >>> r.status.name, r.value, r.detail.split(":")[0]
    ('CRIT', 2, 'SPLIT DATACENTER')
    >>> site_split({"massar": "rabat", "portal": None})[0].status.name
    'UNKNOWN'
    >>> site_split(None)
    []
    """
    if primaries is None:
        return []
    if len(primaries) < 2:
        return [CheckResult(NAME, Status.OK, "a single service: nothing to split", None, 1, "1 site")]
    sites = by_site(primaries)
    unknown = [service for service, site in primaries.items() if site is None]
    if len(sites) > 1:
        return [CheckResult(NAME, Status.CRIT, f"SPLIT DATACENTER: {describe(sites)}; the services are not all in "
                                               f"one site: finish the site operation (dcctl resume) or move the "
                                               f"others", None, len(sites), "1 site")]
    if unknown:
        known = f"; {describe(sites)}" if sites else ""
        return [CheckResult(NAME, Status.UNKNOWN, f"no single primary is known for {', '.join(unknown)} (down, "
                                                  f"unreachable or split brain: see one_primary), so it cannot be "
                                                  f"placed{known}", None, None, "1 site")]
    (site, services), = sites.items()
    return [CheckResult(NAME, Status.OK, f"every service has its primary at {site} ({', '.join(services)})", None,
                        1, "1 site")]
