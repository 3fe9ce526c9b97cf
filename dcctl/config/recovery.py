"""The recovery plan's checks against the services it orders (pure): every name a configured
service, none listed twice, and none left out. A site operation that silently left a service
behind would split the datacenter, so an explicit plan must name every service."""
from __future__ import annotations

import difflib
import json

from dcctl.config.schema import Config, RecoveryGroup


def recovery_plan_problems(config: Config, source: str) -> list[str]:
    if config.recovery_plan is None:
        return []
    problems = []
    first_seen: dict[str, str] = {}
    for group_index, group in enumerate(config.recovery_plan):
        if group is None:
            continue  # its own problem is already recorded
        if not group.services:
            problems.append(f"{source}: recovery_plan[{group_index}]: expected at least one service, got none")
        for item_index, name in enumerate(group.services):
            path = item_path(group, group_index, item_index)
            if not isinstance(name, str):
                continue  # recorded by the loader
            if name not in config.services:
                problems.append(f"{source}: {path}: unknown service {json.dumps(name)}{_did_you_mean(name, config)}")
            elif name in first_seen:
                problems.append(f"{source}: {path}: service {json.dumps(name)} is already in {first_seen[name]}; "
                                f"a service belongs to exactly one group")
            else:
                first_seen[name] = path
    missing = [name for name in config.services if name not in first_seen]
    if missing:
        names = ", ".join(json.dumps(name) for name in missing)
        problems.append(f"{source}: recovery_plan: expected every service in a group, missing {names} (a site "
                        f"operation must not leave a service behind; delete recovery_plan to move all services "
                        f"as one group)")
    return problems


def item_path(group: RecoveryGroup, group_index: int, item_index: int) -> str:
    """
    >>> item_path(RecoveryGroup(services=["a"], listed=True), 1, 0)
    'recovery_plan[1][0]'
    >>> item_path(RecoveryGroup(services=["a"]), 1, 0)
    'recovery_plan[1].services[0]'
    """
    if group.listed:
        return f"recovery_plan[{group_index}][{item_index}]"
    return f"recovery_plan[{group_index}].services[{item_index}]"


def _did_you_mean(name: str, config: Config) -> str:
    close = difflib.get_close_matches(name, list(config.services), n=1, cutoff=0.6)
    return f" (did you mean {json.dumps(close[0])}?)" if close else f"; configured: {', '.join(config.services)}"
