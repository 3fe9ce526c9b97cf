"""Which running primary is the real one: decided from the running primaries and the recorded
generation (dcctl.model.Generation), without I/O. The check `stale_primary`, the file-sync push
decision and the agent's generation watch all judge with these functions; reading and writing the
record is dcctl/ops/generation.py's job."""
from __future__ import annotations

from dataclasses import dataclass

from dcctl.model import Generation, ServiceView


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
