"""Before `dcctl resume` acts on a journal: look at the world again, and refuse (marking the
operation superseded) when it is no longer the one the journal expects."""
from __future__ import annotations

from dcctl.config.schema import Config
from dcctl.errors import DcctlError, RefusedError
from dcctl.model import ServiceView
from dcctl.ops import generation
from dcctl.ops.journal import Journal, JournalState
from dcctl.ops.resume_check import TIMELINE_KEYS, may_have_made, newest_known_timeline, resume_refusals


def parts_timeline(config: Config, parts: set[str]) -> int | None:
    """The newest timeline a composite's parts saw or may have made (a part halted after its
    promotion has not recorded its generation yet)."""
    newest = []
    for op in parts:
        try:
            part = Journal.open(config.state_dir, op).state()
        except (DcctlError, OSError):
            continue
        seen = newest_known_timeline(part.observed, TIMELINE_KEYS.get(part.header.get("kind", ""), ()), None)
        if seen is not None:
            newest.append(may_have_made(seen, part.started, part.observed))
    return max(newest, default=None)


def refuse_if_superseded(config: Config, journal: Journal, state: JournalState) -> ServiceView:
    """The fresh snapshot resume decided on (the operation goes on with it), or RefusedError."""
    from dcctl.topology import gather_view

    header = state.header
    name, service = config.service(header["service"])
    view = gather_view(config, name, service)
    recorded = generation.read_local(config.state_dir, name)
    parts = {entry["op"] for entry in journal.entries() if entry.get("event") == "part"}
    reasons = resume_refusals(header, state.started, set(state.ended), state.observed, view, recorded,
                              own_parts=parts, parts_timeline=parts_timeline(config, parts))
    if not reasons:
        return view
    journal.append("finish", outcome="superseded", reasons=reasons)
    raise RefusedError(f"resume of {header.get('op')} refused, the world changed since it stopped:\n  - "
                       + "\n  - ".join(reasons),
                       hint="the operation is marked superseded and nothing was changed; `dcctl status` shows the "
                            "roles now; start a new operation if one is still needed")
