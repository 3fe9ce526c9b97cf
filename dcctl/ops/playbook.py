"""Playbooks: the ordered steps of each operation, with hook points. Loaded and validated like
the config: every mistake names the file, the entry and what was expected.

A site may ship its own playbook (config `playbooks_dir`) to add hook points; the built-in
steps must all be there, in their safe order, because that order is what keeps data safe
(e.g. never promote before the standby has replayed the old primary's last record).
"""
from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import yaml

from dcctl.config.load import decode_utf8, safe_load_yaml
from dcctl.errors import ConfigError

OPERATIONS = ("switchover", "failover", "rejoin", "drill", "drill_full")


@functools.cache
def builtin_steps(operation: str) -> tuple[str, ...]:
    """An operation's built-in steps in their safe order. The playbooks shipped inside the package
    are the one place step order is written; everything else (validation of a site's playbook,
    the tests that every step has its action) reads it from there."""
    path = shipped_playbooks() / f"{operation}.yaml"
    raw = safe_load_yaml(decode_utf8(path.read_bytes(), str(path)))
    return tuple(entry for entry in raw["steps"] if isinstance(entry, str))


class _ShippedSteps(Mapping[str, tuple[str, ...]]):
    def __getitem__(self, operation: str) -> tuple[str, ...]:
        if operation not in OPERATIONS:
            raise KeyError(operation)
        return builtin_steps(operation)

    def __iter__(self) -> Iterator[str]:
        return iter(OPERATIONS)

    def __len__(self) -> int:
        return len(OPERATIONS)


BUILTIN_STEPS: Mapping[str, tuple[str, ...]] = _ShippedSteps()


@dataclass(frozen=True)
class PlaybookStep:
    name: str  # a built-in step, or the hook point name
    hook: bool = False

    @property
    def label(self) -> str:
        return f"hook:{self.name}" if self.hook else self.name


@dataclass(frozen=True)
class Playbook:
    operation: str
    steps: tuple[PlaybookStep, ...]
    source: str

    @property
    def hook_points(self) -> list[str]:
        return [s.name for s in self.steps if s.hook]


def shipped_playbooks() -> Traversable:
    """The playbooks inside the installed package (the repository's playbooks/ is a symlink to them)."""
    return resources.files("dcctl") / "data" / "playbooks"


def load_playbook(operation: str, directory: str | Path | None = None) -> Playbook:
    base = Path(directory) if directory else shipped_playbooks()
    path = base / f"{operation}.yaml"
    try:
        text = decode_utf8(path.read_bytes(), str(path))
    except OSError as exc:
        hint = ("every operation needs its playbook in playbooks_dir; copy the missing one from the shipped "
                "playbooks, or remove playbooks_dir" if directory else
                "the playbooks shipped inside the dcctl package are missing: reinstall dcctl")
        raise ConfigError([f"{path}: cannot read playbook: {exc.strerror or exc}"], hint=hint) from None
    return parse_playbook(operation, text, str(path))


def parse_playbook(operation: str, text: str, source: str) -> Playbook:
    try:
        raw = safe_load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {exc}"]) from None
    problems = []
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: expected a mapping with operation and steps"])
    if raw.get("operation") != operation:
        problems.append(f"{source}: operation: expected {json.dumps(operation)}, got {json.dumps(raw.get('operation'), default=str)}")
    unknown = set(map(str, raw)) - {"operation", "steps", "description"}
    for name in sorted(unknown):
        problems.append(f"{source}: {name}: unknown key; known keys: operation, steps, description")
    entries = raw.get("steps")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(problems + [f"{source}: steps: expected a list of step names and hook: NAME entries"])
    builtin = BUILTIN_STEPS[operation]
    steps = []
    for index, entry in enumerate(entries):
        where = f"{source}: steps[{index}]"
        if isinstance(entry, str):
            if entry not in builtin:
                close = difflib.get_close_matches(entry, builtin, n=1)
                hint = f'; did you mean "{close[0]}"?' if close else f"; {operation} steps: {', '.join(builtin)}"
                problems.append(f"{where}: unknown step {json.dumps(entry)}{hint}")
            steps.append(PlaybookStep(entry))
        elif isinstance(entry, dict) and set(entry) == {"hook"} and isinstance(entry["hook"], str) and entry["hook"]:
            steps.append(PlaybookStep(entry["hook"], hook=True))
        else:
            problems.append(f"{where}: expected a built-in step name or {{hook: NAME}}, got {json.dumps(entry, default=str)}")
    order = [s.name for s in steps if not s.hook]
    if not problems and order != list(builtin):
        missing = [name for name in builtin if name not in order]
        detail = f"missing {', '.join(missing)}" if missing else "out of order or repeated"
        problems.append(f"{source}: steps: the built-in steps must all appear once, in this order: "
                        f"{', '.join(builtin)} ({detail})")
    if problems:
        raise ConfigError(problems)
    return Playbook(operation, tuple(steps), source)
