"""The generation: the timeline of the current primary, recorded where dcctl runs and at every
reachable site after each promotion. A node that runs as a primary on an older generation must
never accept writes again (see stale_primaries)."""
from __future__ import annotations

import json
import posixpath

from dataclasses import asdict, dataclass, field
from pathlib import Path

from dcctl.errors import DcctlError
from dcctl.model import ServiceView


@dataclass(frozen=True)
class Generation:
    service: str
    generation: int
    primary: str
    fenced: list[str] = field(default_factory=list)
    operation: str | None = None
    at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def local_path(state_dir: str, service: str) -> Path:
    return Path(state_dir) / f"{service}.generation.json"


def site_path(site_state_dir: str, service: str) -> str:
    return posixpath.join(site_state_dir, f"{service}.generation.json")


def record(ctx, gen: Generation) -> list[str]:
    """Write the record locally and at every site that answers; returns where it was written."""
    written = []
    path = local_path(ctx.config.state_dir, gen.service)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(gen.to_json())
    tmp.replace(path)
    written.append("local")
    for site, cfg in ctx.service.sites.items():
        try:
            transport = ctx.transport(site)
            transport.run(["mkdir", "-p", cfg.state_dir], timeout=30).check()
            transport.write_file(site_path(cfg.state_dir, gen.service), gen.to_json().encode(), mode=0o644)
            written.append(site)
        except DcctlError as exc:
            ctx.say(f"could not record the generation at site {site}: {exc.message}")
    return written


def read_local(state_dir: str, service: str) -> Generation | None:
    path = local_path(state_dir, service)
    if not path.exists():
        return None
    return Generation(**json.loads(path.read_text()))


def stale_primaries(view: ServiceView, recorded: Generation | None) -> list[str]:
    """Sites running as primary although a newer generation belongs to another site (pure).

    Two primaries: the one on the lower timeline is stale. One primary that is not the recorded
    one, on a timeline older than the recorded generation: stale as well.
    """
    primaries = [s for s in view.primaries() if s.node is not None]
    stale = []
    if len(primaries) > 1:
        newest = max(p.node.timeline or 0 for p in primaries)
        stale += [p.site for p in primaries if (p.node.timeline or 0) < newest]
    if recorded:
        stale += [p.site for p in primaries if p.site != recorded.primary
                  and (p.node.timeline or 0) < recorded.generation and p.site not in stale]
    return stale



