"""`dcctl check --check NAME` accepts every name an alert can show: the catalog's check names and
the result names the agent exports as dcctl_check_status{check=...} (issue 17: `--check
filesync_lag` exited 2)."""
import doctest
import re
from pathlib import Path

from dcctl.checks import catalog
from dcctl.checks.catalog import CATALOG, SELECTABLE, Facts, check_of, run_checks
from dcctl.config.schema import Thresholds
from tests.unit.views import healthy

CHECKS = Path(catalog.__file__).parent


def result_names_in_source() -> set[str]:
    return {name for path in CHECKS.glob("*.py")
            for name in re.findall(r'CheckResult\(\s*"([a-z_]+)"', path.read_text())}


def test_every_result_name_the_checks_yield_is_selectable():
    names = result_names_in_source()
    assert {"filesync_lag", "replication_lag_bytes", "drill_age"} <= names
    assert names <= set(SELECTABLE)
    assert all(check_of(name) in CATALOG for name in names)


def test_a_result_name_selects_that_result_only():
    facts = Facts(healthy(), Thresholds())
    assert {r.name for r in run_checks(facts, ["replication_lag_seconds"])} == {"replication_lag_seconds"}
    assert {r.name for r in run_checks(facts, ["replication_lag"])} == {"replication_lag_bytes",
                                                                         "replication_lag_seconds"}
    both = run_checks(facts, ["replication_lag_bytes", "disk_free"])
    assert {r.name for r in both} == {"replication_lag_bytes", "disk_free"}


def test_check_of_doctest():
    assert doctest.testmod(catalog).failed == 0
