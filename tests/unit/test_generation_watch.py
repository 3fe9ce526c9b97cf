"""Pure decisions against a primary that must not take writes: two primaries (on different or on
the same timeline), the watch's fence (superseded, isolated), and synchronous_standby_names."""
import doctest

import pytest

from dcctl.agent import watcher
from dcctl.agent.watcher import Reading, Round, fence_reason
from dcctl.checks.catalog import Facts, run_checks
from dcctl.checks.result import Status
from dcctl.config.schema import Thresholds
from dcctl.generation_rules import judge_primaries, newest
from dcctl.model import Generation
from dcctl.ops import sync_rep
from dcctl.ops.sync_rep import SyncFacts, decide
from tests.unit.test_pure_layer import FORBIDDEN, PACKAGE, imported_modules
from tests.unit.views import primary, site, standby, view

REC_RABAT = Generation("massar", 1, "rabat")


# ---- two primaries ----------------------------------------------------------------------------

def test_the_older_timeline_is_stale_whatever_the_record():
    verdict = judge_primaries({"rabat": 3, "backup": 4}, None)
    assert list(verdict.stale) == ["rabat"] and verdict.ambiguous == ()
    assert "newer timeline 4" in verdict.stale["rabat"]


def test_same_timeline_the_record_names_the_real_primary():
    verdict = judge_primaries({"rabat": 1, "backup": 1}, REC_RABAT)
    assert list(verdict.stale) == ["backup"] and verdict.ambiguous == ()
    assert verdict.stale["backup"] == ("backup and rabat both run as primaries on timeline 1, and the recorded "
                                       "generation 1 names rabat")


@pytest.mark.parametrize("recorded", [None, Generation("massar", 0, "rabat"), Generation("massar", 1, "elsewhere")],
                         ids=["no record", "record older than the timeline", "record names neither"])
def test_same_timeline_without_a_telling_record_stops_nobody(recorded):
    verdict = judge_primaries({"rabat": 1, "backup": 1}, recorded)
    assert verdict.stale == {} and verdict.ambiguous == ("backup", "rabat")
    assert "cannot tell which one is the real primary" in verdict.why_ambiguous


def test_one_primary_behind_the_record_is_stale():
    assert list(judge_primaries({"rabat": 3}, Generation("massar", 4, "backup", ["rabat"])).stale) == ["rabat"]
    assert judge_primaries({"rabat": 3}, Generation("massar", 3, "rabat")).stale == {}


def test_the_newest_record_wins():
    assert newest(None, Generation("m", 2, "backup"), Generation("m", 1, "rabat")).primary == "backup"
    assert newest(None, None) is None


def generation_results(v, recorded):
    return [r for r in run_checks(Facts(v, Thresholds(), recorded_generation=recorded)) if r.name == "generation"]


def test_the_check_names_the_stale_one_on_a_shared_timeline():
    v = view(site("rabat", primary(timeline=1)), site("backup", primary(timeline=1)))
    [r] = generation_results(v, REC_RABAT)
    assert r.status is Status.CRIT and r.site == "backup" and "dcctl rejoin --site backup" in r.detail


def test_the_check_names_both_when_nothing_tells_them_apart():
    v = view(site("rabat", primary(timeline=1)), site("backup", primary(timeline=1)))
    [r] = generation_results(v, None)
    assert r.status is Status.CRIT and r.site is None and r.value == 2
    assert r.detail.startswith("TWO PRIMARIES: backup and rabat both run as primaries on timeline 1 and no "
                               "generation is recorded")


# ---- the watch's fence --------------------------------------------------------------------------

PRIMARY1, PRIMARY2, STANDBY1, STANDBY2 = Reading(False, 1), Reading(False, 2), Reading(True, 1), Reading(True, 2)


def fence(own, peer, recorded=None, *, unseen=0.0, isolation=None, peer_agent=False, witness=None):
    r = Round(own=own, peer=peer, peer_agent=peer_agent, witness=witness, recorded=recorded)
    return fence_reason("rabat", "backup", r, peer_unseen_for=unseen, isolation_after=isolation, fence_stale=True)


def test_a_primary_superseded_by_a_newer_peer_stops():
    reason, why = fence(PRIMARY1, PRIMARY2)
    assert reason == "stale" and why == ("STALE PRIMARY: rabat runs as a primary on timeline 1 while backup runs "
                                         "as a primary on the newer timeline 2")


def test_the_record_alone_is_enough_when_the_peer_does_not_answer():
    assert fence(PRIMARY1, None, Generation("massar", 2, "backup", ["rabat"]))[0] == "stale"


def test_a_healthy_pair_and_a_standby_are_left_alone():
    assert fence(PRIMARY1, Reading(True, 1)) is None
    assert fence(Reading(True, 1), PRIMARY2) is None
    assert fence(None, PRIMARY2) is None


def test_same_timeline_peer_named_by_the_record_stops_this_one_only():
    assert fence(PRIMARY1, Reading(False, 1), Generation("massar", 1, "backup"))[0] == "stale"
    assert fence(PRIMARY1, Reading(False, 1), REC_RABAT) is None
    assert fence(PRIMARY1, Reading(False, 1), None) is None  # ambiguous: the check alarms, nobody guesses


def test_the_primary_a_failover_made_is_not_stopped_for_missing_the_peer_it_fenced():
    """Found by the netns split-brain test: with the isolation fence on and no witness, the new
    primary stopped itself 3 s after the failover, because the lost site it had just replaced did
    not answer: a failover that stops its own result. The peer the record names fenced is expected
    to be gone until it is rejoined (its rejoin records a generation without it)."""
    after_failover = Generation("massar", 2, "rabat", ["backup"])
    assert fence(PRIMARY2, None, after_failover, unseen=60.0, isolation=3.0) is None
    assert fence(PRIMARY2, None, Generation("massar", 2, "rabat"), unseen=60.0, isolation=3.0)[0] == "isolated"


def test_isolation_fence_after_the_configured_time_unless_the_witness_answers():
    assert fence(PRIMARY1, None, unseen=30.0) is None  # off by default
    assert fence(PRIMARY1, None, unseen=4.9, isolation=5.0) is None
    reason, why = fence(PRIMARY1, None, unseen=5.0, isolation=5.0)
    assert reason == "isolated" and "has reached neither backup's PostgreSQL nor its agent for 5.0 s" in why
    assert fence(PRIMARY1, None, unseen=9.0, isolation=5.0, witness=True) is None
    assert "nor the witness" in fence(PRIMARY1, None, unseen=9.0, isolation=5.0, witness=False)[1]


# ---- synchronous_standby_names ------------------------------------------------------------------

WANT = '"backup"'


def facts(in_recovery=False, current=WANT, streaming=True, unseen=0.0, timeline=2, waited=0.0, watched=100.0):
    return SyncFacts(site="rabat", peer="backup", in_recovery=in_recovery, timeline=timeline, current=current,
                     peer_streaming=streaming, waited=waited, unseen_for=unseen, watched_for=watched)


def test_async_mode_leaves_the_setting_alone():
    assert decide("async", 10, facts(current="whatever", streaming=False, unseen=99), None).value is None


@pytest.mark.parametrize("mode", ["sync", "strict"])
def test_a_standby_names_its_peer_before_any_promotion(mode):
    assert decide(mode, 10, facts(in_recovery=True, current='"rabat"'), None).value == WANT
    assert decide(mode, 10, facts(in_recovery=True, current=WANT), None).value is None


@pytest.mark.parametrize("mode", ["sync", "strict"])
def test_a_primary_waits_for_its_streaming_peer(mode):
    assert decide(mode, 10, facts(current=""), None).value == WANT
    assert decide(mode, 10, facts(), None).value is None


def test_sync_relaxes_after_relax_after_and_strict_never():
    assert decide("sync", 10, facts(streaming=False, unseen=9.9), None).value is None
    relaxed = decide("sync", 10, facts(streaming=False, unseen=10.0), None)
    assert relaxed.value == "" and "relax_after 10 s" in relaxed.why
    assert decide("strict", 10, facts(streaming=False, unseen=1e6, waited=1e6), None).value is None
    assert decide("sync", 10, facts(current="", streaming=False, unseen=1e6), None).value is None


def test_a_standby_that_looks_streaming_but_lets_commits_wait_is_relaxed():
    # A frozen or cut-off walreceiver keeps its 'streaming' connection until wal_sender_timeout.
    assert decide("sync", 10, facts(waited=9.9), None).value is None
    relaxed = decide("sync", 10, facts(waited=10.0), None)
    assert relaxed.value == "" and "have waited 10.0 s for backup" in relaxed.why


def test_nothing_is_relaxed_before_the_watch_has_watched_relax_after_without_a_gap():
    # A thawed agent has not seen the time its host was frozen: commits that waited then may belong
    # to a primary that has been failed over meanwhile.
    assert decide("sync", 10, facts(waited=60.0, streaming=False, unseen=60.0, watched=0.5), None).value is None


@pytest.mark.parametrize("mode", ["sync", "strict"])
def test_a_failover_releases_the_new_primary_from_its_fenced_peer(mode):
    record = Generation("massar", 2, "rabat", ["backup"])
    decision = decide(mode, 10, facts(streaming=False, unseen=0.1), record)
    assert decision.value == "" and "fenced by the failover" in decision.why
    assert decide(mode, 10, facts(streaming=False, unseen=0.1), Generation("massar", 2, "rabat")).value is None


def test_a_primary_naming_someone_else_is_corrected():
    assert decide("strict", 10, facts(current='"rabat"', streaming=False), None).value == WANT


def test_the_watch_metrics_are_declared():
    from dcctl.agent.metrics import METRICS

    for name in ("dcctl_watch_last_success_timestamp_seconds", "dcctl_watch_peer_last_seen_timestamp_seconds",
                 "dcctl_sync_standby_required", "dcctl_fence_total"):
        assert name in METRICS


@pytest.mark.parametrize("module", [sync_rep, watcher])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def test_the_decisions_do_no_io():
    assert not imported_modules(PACKAGE / "ops" / "sync_rep.py") & FORBIDDEN
    assert not imported_modules(PACKAGE / "ops" / "generation.py") & FORBIDDEN


def test_standby_view_helper_still_builds():  # the shared views stay valid with the new check
    assert generation_results(view(site("rabat", primary()), site("backup", standby())), None)[0].status is Status.OK


# ---- the watch's isolation clock, round by round ------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def time(self):
        return 1_800_000_000.0 + self.now


def isolated_watch(monkeypatch, isolation_after: float):
    """A rabat watch with the isolation fence on, whose rounds see what the test says; its fence
    is counted instead of carried out."""
    from dcctl.agent.setup import resolve
    from dcctl.config import parse_config
    from tests.unit.test_config import with_change

    clock, fences = Clock(), []
    monkeypatch.setattr(watcher, "time", clock)
    monkeypatch.setattr(watcher, "stop_own_postgres", lambda setup, service, why, transport: fences.append(why) or True)
    config = parse_config(with_change("services.massar.sites.rabat.agent",
                                      {"isolation_fence_after": isolation_after}), "dcctl.yaml")
    watch = watcher.GenerationWatch(resolve(config, "rabat"), "massar")
    monkeypatch.setattr(watch, "_hold_transport", lambda: None)

    def round_at(t, own, recorded):
        clock.now = t
        monkeypatch.setattr(watch, "_observe", lambda: Round(own=own, peer=None, peer_agent=False, witness=None,
                                                             recorded=recorded))
        watch._round()
        return len(fences)

    return round_at, fences


def test_a_standby_promoted_during_a_partition_is_not_fenced_before_the_failover_records_it(monkeypatch):
    """Found by the netns split-brain test in CI (1 run in several): the failover promoted rabat
    4 s into the partition, and rabat's own agent stopped it in the 0.1 s before the failover
    recorded the generation that names backup fenced, because the peer had been unseen for longer
    than isolation_fence_after while rabat was still a standby. A primary is isolated for as long as
    it has been a primary out of reach of its peer, not for as long as the peer has been gone."""
    before, after = Generation("massar", 1, "backup"), Generation("massar", 2, "rabat", ["backup"])
    round_at, fences = isolated_watch(monkeypatch, 3.0)
    for t in (0.5, 1.5, 2.5, 3.5):
        assert round_at(t, STANDBY1, before) == 0  # the partition starts at 0: backup is never seen
    assert round_at(4.0, PRIMARY2, before) == 0  # promoted; the failover has not recorded it yet
    assert round_at(4.5, PRIMARY2, after) == 0
    assert round_at(60.0, PRIMARY2, after) == 0  # the peer it fenced is expected gone


def test_a_promoted_primary_nobody_records_is_fenced_once_isolated_for_the_configured_time(monkeypatch):
    round_at, fences = isolated_watch(monkeypatch, 3.0)
    before = Generation("massar", 1, "backup")
    for t in (0.5, 1.5, 2.5, 3.5):
        round_at(t, STANDBY1, before)
    assert round_at(4.0, PRIMARY2, before) == 0
    assert round_at(6.9, PRIMARY2, before) == 0
    assert round_at(7.0, PRIMARY2, before) == 1 and "ISOLATED PRIMARY" in fences[0]
