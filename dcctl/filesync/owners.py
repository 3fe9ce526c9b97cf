"""Can the receiving site keep the owners of a store's files? Asked ahead of time by `dcctl config
check` and the agent's start (reliability item 13).

A store with `owners: keep` (the default) is synced with rsync -o -g and verified owner by owner.
Only root can give a file another user's owner: a receiver that is not root leaves each copy owned
by itself, the switchover's final verify finds the owners differ, and every switchover rolls back.
The receiver is the user rsync runs as at the receiving site: the SSH user of that site, or, when
both sites are this machine, the user of the source site's local transport; `rsync_path: sudo -n
rsync` makes it root.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Callable

from dcctl.config.schema import LocalTransportConfig, ServiceConfig
from dcctl.errors import DcctlError
from dcctl.transport.base import Transport

TIMEOUT = 30.0


@dataclass(frozen=True)
class Receiver:
    name: str
    uid: int
    gids: tuple[int, ...]


@dataclass(frozen=True)
class Foreign:
    """An entry of the source store whose owner the receiver cannot give its copy."""

    path: str
    owner: str
    group: str


def runs_as_root(rsync_path: str) -> bool:
    """
    >>> runs_as_root("sudo -n rsync"), runs_as_root("/usr/bin/rsync"), runs_as_root("sudo -u www rsync")
    (True, False, False)
    """
    words = shlex.split(rsync_path)
    return bool(words) and words[0].rsplit("/", 1)[-1] == "sudo" and "-u" not in words


def parse_id(output: str) -> Receiver:
    """`id -un; id -u; id -G` -> Receiver.

    >>> parse_id("postgres\\n101\\n104 103\\n")
    Receiver(name='postgres', uid=101, gids=(104, 103))
    """
    name, uid, gids = output.split("\n")[:3]
    return Receiver(name.strip(), int(uid), tuple(int(g) for g in gids.split()))


def foreign_argv(store: str, receiver: Receiver) -> list[str]:
    """find the first entry not owned by the receiver, or in a group it is not a member of.

    >>> " ".join(foreign_argv("/srv/docs", Receiver("postgres", 101, (104,))))
    'find /srv/docs ( ! -uid 101 -o ! -gid 104 ) -printf %u\\\\0%g\\\\0%p\\\\0 -quit'
    """
    groups = [word for gid in receiver.gids for word in ("!", "-gid", str(gid))]
    return ["find", store, "(", "!", "-uid", str(receiver.uid), "-o", *groups, ")", "-printf", "%u\\0%g\\0%p\\0",
            "-quit"]


def parse_foreign(output: str) -> Foreign | None:
    """
    >>> parse_foreign("nobody\\x00nogroup\\x00/srv/docs/scan.pdf\\x00"), parse_foreign("")
    (Foreign(path='/srv/docs/scan.pdf', owner='nobody', group='nogroup'), None)
    """
    parts = output.split("\0")
    return Foreign(parts[2], parts[0], parts[1]) if len(parts) >= 3 else None


def sentence(store: str, source: str, target: str, found: Foreign, receiver: Receiver) -> str:
    """The one warning an operator reads."""
    return (f"store {store}: {source}:{found.path} is owned by {found.owner}:{found.group}, but rsync at {target} "
            f"runs as {receiver.name}, not root, and cannot keep that owner, so every switchover to {target} would "
            f"roll back at its final verify; set filesync.stores.{store}.owners: ignore (or run the receiving rsync "
            f"as root: filesync.rsync_path: 'sudo -n rsync')")


def receiver_of(service: ServiceConfig, source: str, target: str, transport: Callable[[str], Transport]) -> Receiver:
    local = isinstance(service.sites[target].transport, LocalTransportConfig)
    # Both sites on this machine: rsync copies between directories, as the source site's user.
    result = transport(source if local else target).run(["sh", "-c", "id -un; id -u; id -G"], timeout=TIMEOUT)
    result.check(f"asking which user rsync runs as at site {target}")
    return parse_id(result.stdout)


def owner_warnings(service_name: str, service: ServiceConfig, transport: Callable[[str], Transport]) -> list[str]:
    """A sentence per store (and direction) whose owners cannot be kept; a site that does not
    answer is named too, since nothing could be checked there."""
    warnings = []
    sites = list(service.sites)
    for source in sites:
        for target in (s for s in sites if s != source):
            stores = [name for name in service.sites[source].file_stores
                      if name in service.sites[target].file_stores and service.filesync.keeps_owners(name)]
            if not stores or runs_as_root(service.filesync.rsync_path):
                continue
            try:
                receiver = receiver_of(service, source, target, transport)
                if receiver.uid == 0:
                    continue
                for store in stores:
                    path = service.sites[source].file_stores[store]
                    result = transport(source).run(foreign_argv(path, receiver), timeout=TIMEOUT,
                                                   env={"LC_ALL": "C"})
                    found = parse_foreign(result.stdout)
                    if found:
                        warnings.append(f"service {service_name}: " + sentence(store, source, target, found, receiver))
            except DcctlError as exc:
                warnings.append(f"service {service_name}: cannot tell whether {target} can keep the owners of "
                                f"{source}'s file stores: {exc.message}")
    return warnings


def with_site_transports(service_name: str, service: ServiceConfig) -> list[str]:
    """owner_warnings over transports opened (and closed) here: config check, the agent's start."""
    from dcctl.transport import open_transport

    if not any(site.file_stores for site in service.sites.values()):
        return []
    opened: dict[str, Transport] = {}

    def transport(site: str) -> Transport:
        if site not in opened:
            opened[site] = open_transport(site, service.sites[site])
        return opened[site]

    try:
        return owner_warnings(service_name, service, transport)
    finally:
        for t in opened.values():
            t.close()
