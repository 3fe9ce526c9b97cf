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
    return read_path(local_path(state_dir, service))


def read_path(path: str | Path) -> Generation | None:
    path = Path(path)
    if not path.exists():
        return None
    return Generation(**json.loads(path.read_text()))


def newest(*records: Generation | None) -> Generation | None:
    """The record with the highest generation (the latest promotion) among those found."""
    found = [r for r in records if r is not None]
    return max(found, key=lambda r: (r.generation, r.at)) if found else None


@dataclass(frozen=True)
class PrimariesVerdict:
    """Which running primaries must be stopped, and which cannot be told apart (pure result)."""

    stale: dict[str, str]  # site -> the sentence that says why it must stop
    ambiguous: tuple[str, ...] = ()  # primaries on one timeline that no record tells apart: stop none
    why_ambiguous: str = ""


def judge_primaries(primaries: dict[str, int], recorded: Generation | None) -> PrimariesVerdict:
    """Decide from the running primaries ({site: timeline}) and the recorded generation (pure).

    - Two primaries: the one on the lower timeline is stale.
    - Two primaries on the same (newest) timeline: neither is older by timeline (a standby started
      without standby.signal comes up as a primary on its primary's timeline). The record decides:
      the one it does not name is stale, provided the record is at least as new as that timeline.
      Otherwise nobody guesses: both are named as ambiguous and none is stopped.
    - One primary that is not the recorded one, on a timeline older than the recorded generation:
      stale as well.
    """
    stale: dict[str, str] = {}
    ambiguous: tuple[str, ...] = ()
    why = ""
    if len(primaries) > 1:
        top = max(primaries.values())
        leaders = sorted(site for site, tli in primaries.items() if tli == top)
        for site, tli in sorted(primaries.items()):
            if tli < top:
                stale[site] = (f"{site} runs as a primary on timeline {tli} while {' and '.join(leaders)} runs as a "
                               f"primary on the newer timeline {top}")
        if len(leaders) > 1:
            if recorded and recorded.primary in leaders and recorded.generation >= top:
                for site in leaders:
                    if site != recorded.primary:
                        stale[site] = (f"{site} and {recorded.primary} both run as primaries on timeline {top}, and "
                                       f"the recorded generation {recorded.generation} names {recorded.primary}")
            else:
                ambiguous = tuple(leaders)
                tells = (f"the recorded generation {recorded.generation} names {recorded.primary}"
                         if recorded else "no generation is recorded")
                why = (f"{' and '.join(leaders)} both run as primaries on timeline {top} and {tells}: dcctl cannot "
                       f"tell which one is the real primary")
    if recorded:
        for site, tli in sorted(primaries.items()):
            if site != recorded.primary and tli < recorded.generation and site not in stale:
                stale[site] = (f"{site} runs as a primary on timeline {tli} but the recorded generation "
                               f"{recorded.generation} belongs to {recorded.primary}")
    return PrimariesVerdict(stale, ambiguous, why)


def running_primaries(view: ServiceView) -> dict[str, int]:
    return {s.site: s.node.timeline or 0 for s in view.primaries() if s.node is not None}


def stale_primaries(view: ServiceView, recorded: Generation | None) -> list[str]:
    """Sites running as primary although another one is the real primary (pure; see judge_primaries)."""
    return list(judge_primaries(running_primaries(view), recorded).stale)
