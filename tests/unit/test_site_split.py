"""The cross-service check site_split on hand-built snapshots, and the site-operation metrics
on parsed site journals (issue 18)."""
import doctest

from dcctl.agent import site_ops
from dcctl.agent.metrics import METRICS
from dcctl.agent.site_ops import SiteOperationSummary, site_samples, summarize
from dcctl.checks import site_split as site_split_module
from dcctl.checks.catalog import Facts, run_checks
from dcctl.checks.result import Status
from dcctl.checks.site_split import primary_site, site_split
from dcctl.config.schema import Thresholds
from tests.unit.views import healthy, primary, site, standby, view


def moved():
    """The service switched to the backup site."""
    return view(site("rabat", standby()), site("backup", primary()))


def test_services_in_one_site_are_ok_and_named():
    [result] = site_split({"massar": "rabat", "identity": "rabat", "portal": "rabat"})
    assert result.status is Status.OK
    assert result.detail == "every service has its primary at rabat (massar, identity, portal)"


def test_a_split_is_crit_and_says_which_service_is_where():
    primaries = {"massar": primary_site(healthy()), "identity": primary_site(healthy()),
                 "portal": primary_site(moved())}
    [result] = site_split(primaries)
    assert result.status is Status.CRIT and result.value == 2
    assert "massar, identity at rabat; portal at backup" in result.detail


def test_a_service_without_one_known_primary_is_unknown_for_this_check():
    down = view(site("rabat", None, error="refused"), site("backup", standby()))
    both = view(site("rabat", primary()), site("backup", primary()))
    assert primary_site(down) is None and primary_site(both) is None
    [result] = site_split({"massar": "rabat", "portal": primary_site(down), "identity": primary_site(both)})
    assert result.status is Status.UNKNOWN
    assert "portal, identity" in result.detail and "massar at rabat" in result.detail
    # a split among the known ones outranks what is unknown
    [split] = site_split({"massar": "rabat", "archives": "backup", "portal": None})
    assert split.status is Status.CRIT


def test_a_single_service_config_is_always_ok():
    [result] = site_split({"massar": None})
    assert result.status is Status.OK


def test_the_catalog_runs_it_only_with_every_service_known():
    facts = Facts(healthy(), Thresholds())
    assert not [r for r in run_checks(facts) if r.name == "site_split"]
    split = Facts(healthy(), Thresholds(), service_primaries={"massar": "rabat", "portal": "backup"})
    [result] = run_checks(split, ["site_split"])
    assert result.status is Status.CRIT and result.name == "site_split"


def header(kind="site-switchover", ts=100.0, op="site-switchover-20261204-171500-1a2b"):
    return {"ts": ts, "event": "operation", "op": op, "kind": kind, "service": "(site)", "site_operation": True,
            "groups": [{"services": ["identity"], "on_failure": "stop"}]}


def test_unfinished_or_non_site_journals_have_no_summary():
    assert summarize([header(), {"ts": 101.0, "event": "group_start", "group": 0}]) is None
    single = {"ts": 1.0, "event": "operation", "op": "x-switchover-1", "kind": "switchover", "service": "massar"}
    assert summarize([single, {"ts": 2.0, "event": "finish", "outcome": "success"}]) is None
    assert summarize([]) is None


def test_the_newest_site_operation_of_each_kind_sets_the_metrics():
    old = summarize([header(ts=10.0, op="a"), {"ts": 14.0, "event": "finish", "outcome": "success"}])
    new = summarize([header(ts=50.0, op="b"), {"ts": 58.5, "event": "finish", "outcome": "stopped"}])
    drill = summarize([header("site-drill", 30.0, "c"),
                       {"ts": 40.0, "event": "finish", "outcome": "success", "rto_seconds": 1.25}])
    samples = site_samples([new, old, drill])
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}
    switchover = (("kind", "switchover"),)
    assert values[("dcctl_site_operation_last_duration_seconds", switchover)] == 8.5
    assert values[("dcctl_site_operation_last_run_timestamp_seconds", switchover)] == 58.5
    assert values[("dcctl_site_operation_last_outcome", (("kind", "switchover"), ("outcome", "stopped")))] == 1
    assert values[("dcctl_site_operation_last_outcome", (("kind", "switchover"), ("outcome", "success")))] == 0
    assert ("dcctl_site_operation_last_rto_seconds", switchover) not in values  # not recorded: absent
    assert values[("dcctl_site_operation_last_rto_seconds", (("kind", "drill"),))] == 1.25
    assert all(s.name in METRICS for s in samples)


def test_an_unexpected_outcome_counts_as_other():
    odd = SiteOperationSummary("x", "failover", "superseded", 0.0, 1.0, None)
    ones = [s.labels["outcome"] for s in site_samples([odd]) if s.name.endswith("outcome") and s.value == 1]
    assert ones == ["other"]


def test_doctests():
    assert doctest.testmod(site_split_module).failed == 0
    assert doctest.testmod(site_ops).failed == 0
