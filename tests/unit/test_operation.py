"""The operation lifecycle's pure parts: step order has one source (the shipped playbooks), every
step there has its action and every action its step; roles and refusals come from one snapshot."""
import pytest

from dcctl.ops.operation import actions_for, refusals_for, roles
from dcctl.ops.playbook import BUILTIN_STEPS, OPERATIONS
from tests.unit.views import healthy, primary, site, standby, view


def kind_and_args(operation):
    return ("drill", {"mode": "full"}) if operation == "drill_full" else (operation, {})


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_shipped_step_has_its_action_and_every_action_its_step(operation):
    kind, args = kind_and_args(operation)
    assert set(BUILTIN_STEPS[operation]) == set(actions_for(kind, args))


def test_the_point_of_no_return_is_where_the_design_says():
    irreversible = {op: [name for name, action in actions_for(*kind_and_args(op)).items() if action.irreversible]
                    for op in OPERATIONS}
    assert irreversible == {"switchover": ["promote"], "failover": ["fence_old_primary", "promote"],
                            "rejoin": ["rewind"], "drill": [], "drill_full": ["switchover_there"]}


def test_roles_come_from_the_snapshot():
    from dcctl.config.schema import ServiceConfig  # noqa: F401  (the lab's config is not needed here)

    service = type("S", (), {"sites": {"rabat": None, "backup": None}, "site": lambda self, site, name: None,
                             "drill": type("D", (), {"site": None})()})()
    assert roles("switchover", healthy(), service, {}, to_site=None, site=None) == ("rabat", "backup", [])
    assert roles("rejoin", healthy(), service, {}, to_site=None, site="rabat") == ("rabat", "backup", [])
    assert roles("drill", healthy(), service, {"mode": "non-disruptive"}, to_site=None, site=None) == \
        ("rabat", "backup", [])
    two_standbys = view(site("rabat", standby()), site("backup", standby()))
    assert roles("failover", two_standbys, service, {}, to_site=None, site=None)[2] == \
        ["cannot tell which site is the primary; name the target with --to SITE"]


def test_a_dry_run_lists_every_refusal_at_once():
    broken = view(site("rabat", primary(timeline=2)), site("backup", standby(receiver=None, paused=True)))
    service = type("S", (), {"sites": {"rabat": None, "backup": None},
                             "operation": type("O", (), {"max_lag_bytes": 1 << 30, "max_receipt_age": 5})()})()
    reasons = refusals_for("switchover", broken, service, "rabat", "backup", {})
    assert len(reasons) >= 2 and any("not streaming" in r for r in reasons)


def test_every_command_resolves_lazily_to_itself():
    """The CLI imports a command's module only when it runs: the table must name real commands."""
    import click

    from dcctl.cli.main import COMMANDS, cli

    context = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(context, name)
        assert command is not None and command.name == name, name
