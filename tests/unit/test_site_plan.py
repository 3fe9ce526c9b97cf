"""Site operations, their pure parts: the recovery plan's validation (key paths), the groups, the
services already where the operation takes them, every service's refusals at once, and what the
site journal and report say (hand-built snapshots, no server)."""
from dataclasses import replace

import pytest
import yaml

from dcctl.config import parse_config
from dcctl.errors import ConfigError, DcctlError
from dcctl.report.site import build_site_report
from dcctl.site.decide import SiteState, already_there, group_outcome, is_site_operation, site_operation_id, \
    stop_reason
from dcctl.site.planning import plan_site
from tests.unit.views import healthy, primary, site, standby, view

SERVICES = ("massar", "identity", "portal")


def config_text(recovery_plan=None) -> str:
    services = {name: {"sites": {"rabat": {"transport": {"type": "local"},
                                           "postgres": {"data_dir": f"/pg/{name}/rabat", "port": 5432 + i}},
                                 "backup": {"transport": {"type": "local"},
                                            "postgres": {"data_dir": f"/pg/{name}/backup", "port": 6432 + i}}}}
                for i, name in enumerate(SERVICES)}
    data = {"services": services}
    if recovery_plan is not None:
        data["recovery_plan"] = recovery_plan
    return yaml.safe_dump(data, sort_keys=False)


def problems(recovery_plan) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text(recovery_plan), "dcctl.yaml")
    return caught.value.problems


def named(view_, name):
    return replace(view_, service=name)


def moved():
    return view(site("rabat", standby()), site("backup", primary()))


# ---- the config ------------------------------------------------------------------------------

def test_groups_as_lists_or_mappings_and_the_default_of_one_group():
    config = parse_config(config_text([["identity"], {"services": ["massar", "portal"], "on_failure": "continue"}]))
    groups = config.recovery_groups()
    assert [(g.services, g.on_failure) for g in groups] == [(["identity"], "stop"),
                                                             (["massar", "portal"], "continue")]
    default = parse_config(config_text()).recovery_groups()
    assert [(g.services, g.on_failure) for g in default] == [(list(SERVICES), "stop")]


def test_an_unknown_service_is_named_with_its_key_path_and_the_close_one():
    assert problems([["identity"], ["massar", "portl"]]) == [
        'dcctl.yaml: recovery_plan[1][1]: unknown service "portl" (did you mean "portal"?)',
        'dcctl.yaml: recovery_plan: expected every service in a group, missing "portal" (a site operation must not '
        'leave a service behind; delete recovery_plan to move all services as one group)']


def test_a_service_twice_and_a_bad_on_failure_are_errors_with_key_paths():
    assert problems([["identity", "massar"], {"services": ["massar", "portal"]}]) == [
        'dcctl.yaml: recovery_plan[1].services[0]: service "massar" is already in recovery_plan[0][1]; a service '
        'belongs to exactly one group']
    assert problems([["identity"], {"services": ["massar", "portal"], "on_failure": "ignore"}]) == [
        "dcctl.yaml: recovery_plan[1].on_failure: expected one of stop, continue, got \"ignore\""]
    assert problems([["identity"], {"services": ["massar", "portal"], "onfailure": "stop"}])[0].startswith(
        "dcctl.yaml: recovery_plan[1].onfailure: unknown key; did you mean 'on_failure'?")


def test_a_plan_that_leaves_a_service_out_or_is_not_a_list_is_refused():
    assert problems([["identity", "massar"]])[-1].startswith(
        'dcctl.yaml: recovery_plan: expected every service in a group, missing "portal"')
    assert problems("identity") == ["dcctl.yaml: recovery_plan: expected a list, got \"identity\""]
    assert problems([["identity"], 3, ["massar", "portal"]]) == [
        "dcctl.yaml: recovery_plan[1]: expected a mapping, got 3"]


# ---- planning on snapshots -------------------------------------------------------------------

def test_the_plan_follows_the_groups_and_skips_the_services_already_there():
    config = parse_config(config_text([["identity"], ["massar", "portal"]]))
    views = {"identity": named(healthy(), "identity"), "massar": named(moved(), "massar"),
             "portal": named(healthy(), "portal")}
    site_plan = plan_site(config, "switchover", views, target="backup", op_id="site-switchover-20261204-1-ab")
    assert [[p.service for p in site_plan.group_parts(i)] for i in range(2)] == [["identity"], ["massar", "portal"]]
    assert site_plan.parts["massar"].skipped == "already there: its primary runs at backup"
    assert site_plan.parts["massar"].plan is None
    portal = site_plan.parts["portal"].plan
    assert (portal.ctx.old_primary, portal.ctx.new_primary) == ("rabat", "backup")
    assert portal.ctx.args["site_operation"] == "site-switchover-20261204-1-ab"
    assert site_plan.refusals() == []
    assert site_plan.summary()["identity"]["steps"][0]["step"] == "preflight"


def test_the_refusals_of_every_service_come_together_each_with_its_name():
    config = parse_config(config_text())
    not_streaming = view(site("rabat", primary()), site("backup", standby(receiver=None)))
    views = {"massar": named(not_streaming, "massar"), "identity": DcctlError("connection refused"),
             "portal": named(healthy(), "portal")}
    reasons = plan_site(config, "switchover", views, target="backup").refusals()
    assert any(r.startswith("massar: standby backup is not streaming") for r in reasons)
    assert "identity: no snapshot: connection refused" in reasons
    assert not any(r.startswith("portal") for r in reasons)


def test_a_target_a_service_lacks_is_its_refusal():
    config = parse_config(config_text())
    views = {name: named(healthy(), name) for name in SERVICES}
    reasons = plan_site(config, "switchover", views, target="casablanca").refusals()
    assert reasons == [f"{name}: has no site named 'casablanca' (its sites: rabat, backup)" for name in SERVICES]


def test_already_there_by_kind():
    assert already_there("switchover", moved(), "backup", {}) == "already there: its primary runs at backup"
    assert already_there("switchover", healthy(), "backup", {}) is None
    assert already_there("failover", moved(), "backup", {}) is not None
    two_primaries = view(site("rabat", primary()), site("backup", primary()))
    assert already_there("failover", two_primaries, "backup", {}) is None  # a split brain is no "already there"
    assert already_there("rejoin", moved(), "rabat", {}) == "already there: rabat streams as a standby of backup"
    assert already_there("rejoin", moved(), "rabat", {"force": True}) is None
    down = view(site("rabat", None, error="connection refused"), site("backup", primary()))
    assert already_there("rejoin", down, "rabat", {}) is None
    assert already_there("drill", healthy(), "backup", {}) is None


# ---- between groups --------------------------------------------------------------------------

def test_a_rollback_stops_the_plan_unless_the_group_continues_and_a_halt_always_does():
    assert stop_reason(0, "stop", {"a": "success", "b": "skipped"}) is None
    assert stop_reason(1, "stop", {"a": "success", "b": "rolled_back"}) == \
        "group 2: b did not complete (on_failure: stop)"
    assert stop_reason(1, "continue", {"a": "success", "b": "rolled_back"}) is None
    assert stop_reason(0, "continue", {"a": "halted", "b": "rolled_back"}) == \
        "group 1: a stopped past the point of no return"
    assert group_outcome("stop", {"a": "success", "b": "rolled_back"}) == "stopped"
    assert group_outcome("continue", {"a": "success", "b": "rolled_back"}) == "partial"
    assert group_outcome("continue", {"a": "unfinished"}) == "halted"


def test_site_operation_ids_cannot_be_taken_for_a_service_operation():
    op_id = site_operation_id("switchover")
    assert op_id.startswith("site-switchover-") and is_site_operation(op_id)
    assert not is_site_operation("20261204T171500Z-switchover-1a2b3c")


# ---- the journal and the report --------------------------------------------------------------

def journal_of_a_stopped_plan():
    t = 1_764_800_000.0
    header = {"ts": t, "event": "operation", "op": "site-switchover-x", "kind": "site-switchover",
              "service": "(site)", "old_primary": None, "new_primary": "backup", "args": {},
              "groups": [{"services": ["identity"], "on_failure": "stop"},
                         {"services": ["massar", "portal"], "on_failure": "stop"}], "site_operation": True}
    return [header,
            {"ts": t + 0.1, "event": "group_start", "group": 0, "services": ["identity"]},
            {"ts": t + 0.1, "event": "service_start", "group": 0, "service": "identity", "operation": "op-i"},
            {"ts": t + 1.0, "event": "service_end", "group": 0, "service": "identity", "operation": "op-i",
             "outcome": "success", "error": None},
            {"ts": t + 1.0, "event": "group_end", "group": 0, "outcome": "success", "seconds": 0.9},
            {"ts": t + 1.1, "event": "group_start", "group": 1, "services": ["massar", "portal"]},
            {"ts": t + 1.1, "event": "service_skipped", "group": 1, "service": "massar", "reason": "already there"},
            {"ts": t + 1.1, "event": "service_start", "group": 1, "service": "portal", "operation": "op-p"},
            {"ts": t + 1.5, "event": "service_end", "group": 1, "service": "portal", "operation": "op-p",
             "outcome": "rolled_back", "error": "hook before_switch at rabat failed (rc 1): false"},
            {"ts": t + 1.5, "event": "group_end", "group": 1, "outcome": "stopped", "seconds": 0.4},
            {"ts": t + 1.6, "event": "finish", "outcome": "stopped", "reason": "group 2: portal did not complete"}]


def child(op, service, outcome, writable_at=None, window=None):
    observed = {"final_file_sync": {"documents": {"verified": "identical"}}}
    if writable_at:
        observed.update(writable_at=writable_at, standby_replayed_lsn="0/5000100")
    return {"operation": op, "kind": "switchover", "service": service, "old_primary": "rabat",
            "new_primary": "backup", "outcome": outcome, "write_unavailability_seconds": window,
            "data_loss": "none: the roles did not change" if outcome != "success" else "none: replayed",
            "observed": observed, "args": {}}


def test_the_site_journal_reads_back_and_the_report_says_which_service_is_where():
    entries = journal_of_a_stopped_plan()
    state = SiteState.read(entries)
    assert state.finished and state.outcome == "stopped"
    assert state.children == {"identity": "op-i", "portal": "op-p"}
    assert state.outcomes == {"identity": "success", "massar": "skipped", "portal": "rolled_back"}
    report = build_site_report(entries, {"op-i": child("op-i", "identity", "success", entries[0]["ts"] + 0.8, 0.3),
                                         "op-p": child("op-p", "portal", "rolled_back")})
    where = {row["service"]: (row["outcome"], row["primary_now"]) for row in report["services"]}
    assert where == {"identity": ("success", "backup"), "massar": ("skipped", "backup"),
                     "portal": ("rolled_back", "rabat (unchanged)")}
    assert report["site_rto_seconds"] == pytest.approx(0.8)
    assert [g["outcome"] for g in report["groups"]] == ["success", "stopped"]
    assert report["services"][0]["file_store"] == "documents: identical"
    assert report["data_loss"] == "none on every service"
    assert report["outcome"] == "stopped"


# ---- the site lock ---------------------------------------------------------------------------

def test_two_site_operations_cannot_hold_the_site_lock_and_no_service_lock_is_it(tmp_path):
    import os
    import socket

    from dcctl.errors import RefusedError
    from dcctl.ops.lock import LockOwner, ServiceLock
    from dcctl.site.lock import SiteLock

    first = LockOwner("site-switchover-20261204-171500-1a2b", socket.gethostname(), os.getpid(), 1.0)
    second = LockOwner("site-failover-20261204-171501-3c4d", socket.gethostname(), os.getpid(), 2.0)
    held = SiteLock(str(tmp_path))
    held.acquire(first)
    refusal = SiteLock(str(tmp_path)).refusal_here(second)
    assert refusal is not None and refusal.message.startswith(
        "another site operation holds the site lock: operation site-switchover-20261204-171500-1a2b")
    with pytest.raises(RefusedError):
        SiteLock(str(tmp_path)).acquire(second)
    for name in ("site operations", "site", "(site)"):  # service locks live apart, whatever their name
        assert ServiceLock(str(tmp_path), name, {}).refusal_here(second) is None
    held.release(first)
    assert SiteLock(str(tmp_path)).refusal_here(second) is None


def test_the_markdown_report_names_every_service_and_group():
    from dcctl.report.site import markdown

    entries = journal_of_a_stopped_plan()
    text = markdown(build_site_report(entries, {"op-p": child("op-p", "portal", "rolled_back")}))
    assert "# site switchover to backup: 3 service(s), 2 group(s): stopped" in text
    assert "| portal | 2 | rolled_back: hook before_switch at rabat failed (rc 1): false | rabat (unchanged) |" in text
    assert "| 2 | massar, portal | stop | stopped | 0.400 s |" in text


def test_the_html_report_is_one_page_without_script():
    from dcctl.report.site import html_page

    page = html_page(build_site_report(journal_of_a_stopped_plan(), {"op-p": child("op-p", "portal", "rolled_back")}))
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "src=" not in page
    assert "rabat (unchanged)" in page and "site switchover to backup: 3 service(s), 2 group(s)" in page
