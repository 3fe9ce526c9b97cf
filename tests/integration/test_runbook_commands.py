"""Every `dcctl ...` command an alert annotation or docs/runbooks.md tells an operator to run must
run. The read-only ones (check, status, history, filesync status, config check) run for real
against the lab; the ones that change something go through dcctl's own click parser only (options,
choices, required parameters), never executed."""
import re
import shlex
import warnings
from pathlib import Path

import click
import pytest
import yaml

from dcctl.checks.catalog import RESULT_NAMES, SELECTABLE, check_of
from dcctl.cli.main import cli
from tests.integration.conftest import dcctl, local_lab  # noqa: F401

pytestmark = pytest.mark.lab

REPO = Path(__file__).parents[2]
RULES = REPO / "config" / "prometheus" / "dcctl-alerts.yml"
RUNBOOKS = REPO / "docs" / "runbooks.md"

# What an operator types for the placeholders of the runbooks, on the lab.
PLACEHOLDERS = {"SERVICE": ["massar"], "SITE": ["backup"], "OLD": ["rabat"], "X": ["backup"],
                "OP": ["20261204T000000Z-switchover-massar"], "<operation>": ["20261204T000000Z-switchover-massar"],
                "NAME": ["filesync_lag", "disk_free"]}
# What Prometheus puts in the alert templates: every value the label can take.
LABELS = {"service": ["massar"], "site": ["backup"], "check": SELECTABLE}
READ_ONLY = [("check",), ("status",), ("history",), ("filesync", "status"), ("config", "check")]


def runbook_commands() -> set[str]:
    text = RUNBOOKS.read_text()
    spans = re.findall(r"`(dcctl [^`]*)`", re.sub(r"```.*?```", "", text, flags=re.S))
    blocks = [line.strip() for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
              for line in block.splitlines() if line.strip().startswith("dcctl ")]
    return {" ".join(command.split()) for command in spans + blocks}


def alert_commands() -> set[str]:
    commands = set()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            for value in rule["annotations"].values():
                commands |= set(re.findall(r"`(dcctl [^`]*)`", value))
    return commands


def expand(command: str) -> list[str]:
    """One concrete command per value of each placeholder or template label in it."""
    match = re.search(r"\{\{ \$labels\.(\w+) \}\}", command)
    if match:
        return [c for value in LABELS[match.group(1)] for c in expand(command.replace(match.group(0), value, 1))]
    for placeholder, values in PLACEHOLDERS.items():
        if re.search(rf"(?<![\w-]){re.escape(placeholder)}(?![\w-])", command):
            return [c for value in values
                    for c in expand(re.sub(rf"(?<![\w-]){re.escape(placeholder)}(?![\w-])", value, command, count=1))]
    return [command]


ALL = sorted({concrete for command in runbook_commands() | alert_commands() for concrete in expand(command)})


def words(command: str) -> list[str]:
    return shlex.split(command)[1:]


def subcommand(argv: list[str]) -> tuple[str, ...]:
    """The command path of argv (`filesync status`), after the global options."""
    path, group, rest = [], cli, list(argv)
    ctx = group.make_context("dcctl", rest, resilient_parsing=True)
    rest = remaining(ctx)
    while isinstance(group, click.Group) and rest:
        name, sub, rest = group.resolve_command(ctx, rest)
        assert sub is not None, f"dcctl {' '.join(argv)}: no such command {name!r}"
        path.append(name)
        group = sub
        ctx = sub.make_context(name, rest, parent=ctx, resilient_parsing=True)
        rest = remaining(ctx) if isinstance(sub, click.Group) else []
    return tuple(path)


def remaining(ctx: click.Context) -> list[str]:
    """The words a group's context leaves to its subcommand (click 8.2 deprecates the attribute for 9.0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [*ctx.protected_args, *ctx.args]


def parse(argv: list[str]) -> None:
    """Parse argv with dcctl's click commands, as `dcctl` would before running anything: raises a
    click.UsageError (unknown option, bad choice, missing required parameter)."""
    command, rest = cli, list(argv)
    ctx = cli.make_context("dcctl", rest)
    rest = remaining(ctx)
    while isinstance(command, click.Group):
        assert rest, f"{argv}: a command group without its command"
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
        rest = remaining(ctx) if isinstance(command, click.Group) else []


def test_the_docs_and_alerts_name_commands():
    assert len(runbook_commands()) >= 20 and len(alert_commands()) >= 2
    assert "dcctl check -s massar --check filesync_lag" in ALL  # the case
    assert "dcctl check --service massar --check filesync_lag" in ALL


@pytest.mark.parametrize("command", ALL)
def test_every_named_command_parses(command):
    try:
        parse(words(command))
    except click.UsageError as exc:
        pytest.fail(f"`{command}`: {exc.format_message()}")


@pytest.mark.parametrize("command", [c for c in ALL if subcommand(words(c)) in READ_ONLY])
def test_every_read_only_command_runs_on_the_lab(local_lab, command):
    result = dcctl(*words(command), config=str(local_lab.spec.config_path), check=False, timeout=120)
    is_check = subcommand(words(command)) == ("check",)
    assert result.returncode in ((0, 1, 2, 3) if is_check else (0,)), f"`{command}`: {result.stderr}"
    for symptom in ("Usage:", "Error: ", "Traceback", "dcctl: error:"):
        assert symptom not in result.stderr, f"`{command}`: {result.stderr}"
    if is_check and "--check" in command:  # a result of that check, or the one that says why it has none
        wanted = words(command)[words(command).index("--check") + 1]
        shown = [wanted, *RESULT_NAMES.get(check_of(wanted), ())]
        assert any(name in result.stdout for name in shown), f"`{command}` shows no result:\n{result.stdout}"
