"""The generation record on disk: the timeline of the current primary, written where dcctl runs
and at every reachable site after each promotion, and read back by the checks, the agent and resume.
A node that runs as a primary on an older generation must never accept writes again.

The record itself (dcctl.model.Generation) and the decisions taken from it
(dcctl.generation_rules: judge_primaries, stale_primaries) are pure and live below this module;
they are re-exported here so that `generation.Generation` keeps working in the operations."""
from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING

from dcctl.errors import DcctlError
from dcctl.transport.base import in_made_dir
from dcctl.generation_rules import PrimariesVerdict, judge_primaries, newest, running_primaries, stale_primaries
from dcctl.model import Generation

if TYPE_CHECKING:
    from dcctl.ops.engine import OpContext

__all__ = ["Generation", "PrimariesVerdict", "judge_primaries", "local_path", "newest", "read_local", "read_path",
           "record", "running_primaries", "site_path", "stale_primaries"]


def local_path(state_dir: str, service: str) -> Path:
    return Path(state_dir) / f"{service}.generation.json"


def site_path(site_state_dir: str, service: str) -> str:
    return posixpath.join(site_state_dir, f"{service}.generation.json")


def record(ctx: OpContext, gen: Generation) -> list[str]:
    """Write the record locally and at every site that answers; returns where it was written."""
    written: list[str] = []
    path = local_path(ctx.config.state_dir, gen.service)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(gen.to_json())
    tmp.replace(path)
    written.append("local")
    for site, cfg in ctx.service.sites.items():
        unreachable = ctx.unreachable_just_now(site)
        if unreachable:
            ctx.say(f"the generation is not recorded at site {site}: unreachable moments ago ({unreachable})")
            continue
        try:
            transport = ctx.transport(site)
            in_made_dir(transport, cfg.state_dir, lambda: transport.write_file(
                site_path(cfg.state_dir, gen.service), gen.to_json().encode(), mode=0o644))
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
