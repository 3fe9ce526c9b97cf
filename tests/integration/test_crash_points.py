"""Every crash point of the switchover, the failover, the rejoin and both drill modes, enumerated from the shipped playbooks (not
a hand-written list): dcctl dies (as kill -9 would) just after a step starts or just before its
end is journaled, or gets Ctrl-C there, with a writer running. Then what the operator is told to
do — `dcctl resume` — must leave exactly one primary, the other node streaming, and no
acknowledged commit lost (switchover), with no hand repair."""
import json
import os
import signal
import subprocess
import sys

import pytest

from dcctl.lab.writer import Writer, missing_ids
from dcctl.ops.playbook import builtin_steps
from tests.integration.conftest import dcctl, local_lab, wait_for  # noqa: F401
from tests.integration.test_reliability_ops import operation_ids, roles

pytestmark = pytest.mark.lab



def steps(playbook: str) -> list[str]:
    """The playbook's steps, but the pooler steps: they do nothing on this lab (it has no poolers);
    tests/integration/test_pooler.py stops dcctl at each of them on a lab that has."""
    return [step for step in builtin_steps(playbook) if not step.endswith("_poolers")]


SWITCHOVER_POINTS = [(step, moment, "kill") for step in steps("switchover") for moment in ("start", "end")] \
    + [(step, "start", "sigint") for step in steps("switchover")]
FAILOVER_POINTS = [(step, moment, "kill") for step in steps("failover") for moment in ("start", "end")] \
    + [(step, "start", "sigint") for step in steps("failover")]
# Each failover case ends with a rejoin of the old primary: that rejoin is stopped at the next of
# its own crash points, so every rejoin point is covered at the cost of one resume, not of a
# failover more.
REJOIN_POINTS = [(step, moment, "kill") for step in builtin_steps("rejoin") for moment in ("start", "end")]
FAILOVER_THEN_REJOIN = [(*FAILOVER_POINTS[i % len(FAILOVER_POINTS)], REJOIN_POINTS[i % len(REJOIN_POINTS)])
                        for i in range(max(len(FAILOVER_POINTS), len(REJOIN_POINTS)))]


def one_primary_one_streaming(lab_) -> str:
    """The primary, once the pair is whole again: one primary, the other streaming from it."""
    def whole():
        current = roles(lab_)
        primaries = [site for site, (role, _) in current.items() if role == "primary"]
        standbys = [site for site, (role, streaming) in current.items() if role == "standby" and streaming]
        return primaries[0] if len(primaries) == 1 and len(standbys) == 1 else None
    return wait_for(whole, timeout=60, what="one primary and one streaming standby")


def outcome(lab_, op: str) -> str | None:
    lines = (lab_.spec.state_dir / "operations" / op / "journal.jsonl").read_text().splitlines()
    finishes = [json.loads(line) for line in lines if '"finish"' in line]
    return finishes[-1]["outcome"] if finishes else None


def run_with_fault(lab_, fault: str, *args: str) -> tuple[subprocess.CompletedProcess, str]:
    known = operation_ids(lab_)
    env = dict(os.environ, DCCTL_CONFIG=str(lab_.spec.config_path), DCCTL_FAULT_AT=fault)
    result = subprocess.run([sys.executable, "-m", "dcctl", "--yes", *args], env=env, capture_output=True,
                            text=True, timeout=180)
    # A full drill also journals the switchovers it runs: the operation is the one of its kind.
    (op,) = [op for op in operation_ids(lab_) - known if f"-{args[0]}-" in op]
    return result, op


def finish_as_told(lab_, result: subprocess.CompletedProcess, op: str) -> str:
    """What the docs tell the operator after a crash or Ctrl-C: `dcctl resume OP` when the
    operation did not end; nothing when it did (rolled back at the first Ctrl-C)."""
    assert "Traceback" not in result.stderr, result.stderr
    if outcome(lab_, op) is None:
        resumed = dcctl("--yes", "resume", op, config=str(lab_.spec.config_path), check=False, timeout=180)
        assert resumed.returncode in (0, 1), resumed.stderr  # 1: it rolled back, as it should before promotion
        assert "Traceback" not in resumed.stderr
    final = outcome(lab_, op)
    assert final in ("success", "rolled_back"), final
    return final


@pytest.mark.parametrize("step, moment, how", SWITCHOVER_POINTS,
                         ids=[f"{how}-{moment}-{step}" for step, moment, how in SWITCHOVER_POINTS])
def test_a_switchover_stopped_at_any_point_is_finished_by_resume(local_lab, step, moment, how):
    lab = local_lab
    before = one_primary_one_streaming(lab)
    with Writer(lab.spec.app_dsn(), rate=200, retry_delay=0.03) as writer:
        writer.wait_for_commits(10)
        result, op = run_with_fault(lab, f"{step}:{moment}:{how}", "switchover")
        assert result.returncode == (99 if how == "kill" else 130), result.stderr
        final = finish_as_told(lab, result, op)
        after = one_primary_one_streaming(lab)
        writer.wait_for_commits(10)
    assert after == (before if final == "rolled_back" else next(s for s in roles(lab) if s != before))
    assert missing_ids(lab.spec.app_dsn(), writer.stats.acknowledged) == []


@pytest.mark.parametrize("step, moment, how, rejoin_point", FAILOVER_THEN_REJOIN,
                         ids=[f"{how}-{moment}-{step}+rejoin-{r[2]}-{r[1]}-{r[0]}"
                              for step, moment, how, r in FAILOVER_THEN_REJOIN])
def test_a_failover_and_its_rejoin_stopped_at_any_point_are_finished_by_resume(local_lab, step, moment, how,
                                                                               rejoin_point):
    lab = local_lab
    old = one_primary_one_streaming(lab)
    postmaster = lab.running(old)
    os.kill(postmaster, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{postmaster}/cmdline")
             or not open(f"/proc/{postmaster}/cmdline", "rb").read(), what="the killed postmaster gone")
    result, op = run_with_fault(lab, f"{step}:{moment}:{how}", "failover")
    assert result.returncode == (99 if how == "kill" else 130), result.stderr
    final = finish_as_told(lab, result, op)
    current = roles(lab)
    primaries = [site for site, (role, _) in current.items() if role == "primary"]
    if final == "rolled_back":
        assert primaries == [], current  # nothing promoted, the old primary still down: run failover again
        dcctl("--yes", "failover", config=str(lab.spec.config_path), timeout=180)
        primaries = [site for site, (role, _) in roles(lab).items() if role == "primary"]
    assert len(primaries) == 1 and primaries[0] != old
    assert (lab.spec.pgdata(old) / "standby.signal").exists() or lab.running(old) is None

    rejoin_step, rejoin_moment, rejoin_how = rejoin_point
    result, op = run_with_fault(lab, f"{rejoin_step}:{rejoin_moment}:{rejoin_how}", "rejoin", "--site", old)
    assert result.returncode == 99, result.stderr
    if finish_as_told(lab, result, op) == "rolled_back":
        dcctl("--yes", "rejoin", "--site", old, config=str(lab.spec.config_path), timeout=300)
    assert one_primary_one_streaming(lab) == primaries[0]


DRILL_POINTS = [(step, moment, "kill") for step in builtin_steps("drill") for moment in ("start", "end")]


@pytest.mark.parametrize("step, moment, how", DRILL_POINTS, ids=[f"{how}-{moment}-{step}" for step, moment, how in DRILL_POINTS])
def test_a_drill_stopped_at_any_point_is_finished_by_resume_and_leaves_production_as_it_was(local_lab, step, moment,
                                                                                              how):
    from dcctl.lab import procs

    lab = local_lab
    primary = one_primary_one_streaming(lab)
    result, op = run_with_fault(lab, f"{step}:{moment}:{how}", "drill")
    assert result.returncode == 99, result.stderr
    finish_as_told(lab, result, op)
    assert one_primary_one_streaming(lab) == primary
    assert procs.port_free(lab.spec.base_port + 6)  # the throwaway copy is gone
    for site in ("rabat", "backup"):
        scratch = lab.spec.site_dir(site) / "dcctl-state" / "drill"
        assert not scratch.exists() or not any(scratch.iterdir())


FULL_DRILL_POINTS = [(step, moment, "kill") for step in builtin_steps("drill_full") for moment in ("start", "end")]


# Stopped inside the drill's first switchover (found by bench/chaos.py): on each side of its point
# of no return, and at a Ctrl-C that rolls it back. The drill's resume finishes that switchover first.
NESTED_POINTS = [("stop_primary", "end", "kill"), ("promote", "start", "kill"), ("wait_writable", "end", "kill"),
                 ("wait_old_primary_streaming", "start", "kill"), ("stop_primary", "end", "sigint")]


@pytest.mark.parametrize("step, moment, how", FULL_DRILL_POINTS + NESTED_POINTS,
                         ids=[f"{how}-{moment}-{step}" for step, moment, how in FULL_DRILL_POINTS + NESTED_POINTS])
def test_a_full_drill_stopped_at_any_point_is_finished_by_resume(local_lab, step, moment, how):
    """The full drill always comes back: after resume the primary is where it was, 0 lost."""
    lab = local_lab
    primary = one_primary_one_streaming(lab)
    with Writer(lab.spec.app_dsn(), rate=200, retry_delay=0.03) as writer:
        writer.wait_for_commits(10)
        result, op = run_with_fault(lab, f"{step}:{moment}:{how}", "drill", "--mode", "full")
        assert result.returncode == (130 if how == "sigint" else 99), result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        if outcome(lab, op) is None:
            resumed = dcctl("--yes", "resume", op, config=str(lab.spec.config_path), check=False, timeout=300)
            assert "Traceback" not in resumed.stderr, resumed.stderr
        assert outcome(lab, op) is not None, f"the full drill {op} did not end"
        assert one_primary_one_streaming(lab) == primary
        writer.wait_for_commits(10)
    assert missing_ids(lab.spec.app_dsn(), writer.stats.acknowledged) == []
