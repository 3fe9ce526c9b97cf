"""Before `dcctl resume` acts on a journal: look at the world again, and refuse (marking the
operation superseded) when it is no longer the one the journal expects."""
from __future__ import annotations

from dcctl.config.schema import Config
from dcctl.errors import RefusedError
from dcctl.model import ServiceView
from dcctl.ops import generation
from dcctl.ops.journal import Journal, JournalState
from dcctl.ops.resume_check import resume_refusals


def refuse_if_superseded(config: Config, journal: Journal, state: JournalState) -> ServiceView:
    """The fresh snapshot resume decided on (the operation goes on with it), or RefusedError."""
    from dcctl.topology import gather_view

    header = state.header
    name, service = config.service(header["service"])
    view = gather_view(config, name, service)
    recorded = generation.read_local(config.state_dir, name)
    parts = {entry["op"] for entry in journal.entries() if entry.get("event") == "part"}
    reasons = resume_refusals(header, state.started, set(state.ended), state.observed, view, recorded,
                              own_parts=parts)
    if not reasons:
        return view
    journal.append("finish", outcome="superseded", reasons=reasons)
    raise RefusedError(f"resume of {header.get('op')} refused, the world changed since it stopped:\n  - "
                       + "\n  - ".join(reasons),
                       hint="the operation is marked superseded and nothing was changed; `dcctl status` shows the "
                            "roles now; start a new operation if one is still needed")
