"""Poolers, pure parts: the `poolers:` config, the include file, what SHOW rows say, the blocking
clients, the agent's stuck-pause decision, the check's verdicts, and the steps without poolers."""
import doctest

import pytest
import yaml

import dcctl.pooler.decide
from dcctl.checks.poolers import PoolerFact, pooler_results
from dcctl.config import parse_config
from dcctl.errors import ConfigError
from dcctl.pooler.decide import pooler_state, served_databases
from tests.unit.test_config import GOOD


def config_with(poolers, database="massar"):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["services"]["massar"]["poolers"] = poolers
    if database:
        data["services"]["massar"]["database"] = database
    return yaml.safe_dump(data)


def test_doctests():
    assert doctest.testmod(dcctl.pooler.decide).failed == 0


def test_a_pooler_is_typed_with_defaults():
    config = parse_config(config_with([{"name": "b1", "site": "rabat", "databases_file": "/etc/pgbouncer/db.ini"}]))
    service = config.services["massar"]
    pooler = service.poolers[0]
    assert (pooler.port, pooler.pause_timeout, pooler.console_only) == (6432, 5.0, False)
    assert served_databases(pooler, service) == ["massar"]


@pytest.mark.parametrize("poolers, expected", [
    ([{"name": "b1", "site": "lisbon", "databases_file": "/x"}], "poolers[0].site: expected one of backup, rabat"),
    ([{"name": "b1"}], "poolers[0].databases_file: expected a path (or console_only: true)"),
    ([{"name": "b1", "console_only": True}, {"name": "b1", "console_only": True}],
     "poolers[1].name: expected a name no other pooler has"),
    ([{"name": "b1", "databases_file": "/x", "pause_timeout": 0}], "poolers[0].pause_timeout"),
])
def test_pooler_mistakes_name_their_key_path(poolers, expected):
    with pytest.raises(ConfigError) as raised:
        parse_config(config_with(poolers), "cfg.yaml")
    assert expected in raised.value.message


def test_a_pooler_without_a_database_to_serve_is_refused():
    with pytest.raises(ConfigError) as raised:
        parse_config(config_with([{"name": "b1", "console_only": True}], database=None), "cfg.yaml")
    assert "poolers[0].databases: expected the PgBouncer database names" in raised.value.message


def test_a_pooler_missing_a_served_database_does_not_point_anywhere_good():
    state = pooler_state("b", ["massar", "reports"], [{"name": "massar", "host": "h", "port": 1, "paused": 0}], [])
    assert state.missing == ("reports",) and not state.points_at("h", 1)


def test_the_check_says_standby_target_paused_and_unreachable():
    at_standby = pooler_state("b1", ["massar"], [{"name": "massar", "host": "10.0.0.2", "port": 5432, "paused": 0}], [])
    paused = pooler_state("b2", ["massar"], [{"name": "massar", "host": "10.0.0.1", "port": 5432, "paused": 1}],
                          [{"database": "massar", "cl_waiting": 7}])
    results = pooler_results([PoolerFact("b1", at_standby), PoolerFact("b2", paused),
                              PoolerFact("b3", None, "the admin console of pooler b3 is unreachable")],
                             ("10.0.0.1", 5432))
    by_status = [(r.status.name, r.detail.split(" ")[1].rstrip(":")) for r in results]
    assert by_status == [("CRIT", "b1"), ("WARN", "b2"), ("CRIT", "b3")]
    assert "not at the primary 10.0.0.1:5432" in results[0].detail and results[1].value == 7


def test_a_healthy_pooler_is_ok():
    fine = pooler_state("b1", ["massar"], [{"name": "massar", "host": "10.0.0.1", "port": 5432, "paused": 0}], [])
    [result] = pooler_results([PoolerFact("b1", fine)], ("10.0.0.1", 5432))
    assert result.status.name == "OK"


def test_without_poolers_the_steps_are_skipped_no_ops():
    from dcctl.ops.steps.poolers import SKIPPED, pause_poolers, repoint_poolers, resume_poolers

    class Ctx:
        service = parse_config(yaml.safe_dump(GOOD)).services["massar"]

    for step in (pause_poolers, repoint_poolers, resume_poolers):
        assert step(Ctx()) == {"poolers": SKIPPED}  # type: ignore[arg-type]
