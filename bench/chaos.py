"""The chaos run (fault-injection issue): random operations with random faults on one lab, each
followed by the recovery the docs prescribe and a verification, with independent witnesses
running throughout.

    .venv/bin/python -m bench.chaos --ops N --seed S [--json FILE] [--base-port P] [--dir D] [--keep]

One lab (local transport, service `massar`) is started once, with an agent per site. A seeded
`random.Random(S)` picks every operation and fault:

- operations: `switchover` (3 in 10 as `site switchover --to OTHER`: the site executor, its
  journal and lock, on the lab's one service); `failover` then `rejoin --site OLD`; `drill`
  (non-disruptive, or `--mode full`); a burst of documents written into the primary's store;
- faults: dcctl stopped at a step of the operation's playbook by the test hooks
  (`DCCTL_FAULT_AT=STEP:start|end:kill|sigint`, `DCCTL_FAULT_AFTER_STEP=STEP`), or a real SIGKILL,
  SIGINT or two SIGINTs sent to the dcctl process a random delay after its operation has begun (its
  journal exists); for failovers, the primary's postmaster killed (-9), or its whole process tree
  frozen (SIGSTOP) and thawed after `failover --primary-is-down`; an agent killed (-9) at a random
  moment, restarted after the operation.

After each operation: recover as the docs say (`dcctl resume OP`, or `dcctl resume SITEOP`, while `history` says the
operation did not end, also for any other operation `history` shows unfinished and for the owner
of a stale lock; the failover again if it rolled back; `rejoin` after a failover, again if it
rolled back, `--allow-reclone` only when its refusal names it), then verify: one primary and
one streaming standby, the writer commits again, no acknowledged commit missing but those a
failover may lose (and the next rejoin must count at least as many diverged commits), no synced
document missing at both sites. Anything else needed to make the pair whole is a hand repair.

Witnesses (bench/chaos_watch.py): the lab's Writer (100 commits/s through the multi-host DSN),
each site's `pg_is_in_recovery()` every 50 ms (two writable primaries), a document writer into the
primary's store. Exit status 1 when an invariant is broken, 0 otherwise. Results:
docs/benchmarks.md."""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.chaos_watch import FileWriter, RoleWatch
from bench.common import machine, new_root, say
from dcctl.lab.agents import AgentProcess
from dcctl.lab.faults import freeze_tree, thaw
from dcctl.lab.lab import Lab, lab_down
from dcctl.lab.layout import SITES
from dcctl.lab.procs import free_port_block, wait_until
from dcctl.lab.writer import Writer, missing_ids
from dcctl.ops.playbook import builtin_steps
from dcctl.procs import alive

OPERATIONS = {"switchover": 30, "failover": 25, "drill": 20, "files": 25}  # weights
SITE_SHARE = 0.3  # of the switchovers, run as `dcctl site switchover`
UNFINISHED = ("unfinished", "halted")
COMMAND_TIMEOUT = 300.0
WHOLE_TIMEOUT = 60.0


@dataclass
class Fault:
    kind: str  # step-hook, signal, postmaster-kill, freeze, agent-kill
    detail: str
    injected: bool = True  # a signal sent after dcctl had already ended injects nothing


@dataclass
class Record:
    index: int
    kind: str
    faults: list[Fault] = field(default_factory=list)
    outcome: str = "?"
    recovery: list[str] = field(default_factory=list)
    hand_repairs: list[str] = field(default_factory=list)
    lost_commits: list[int] = field(default_factory=list)
    failover_verdict: str | None = None
    diverged_commits: int | None = None
    primary_before: str | None = None
    primary_after: str | None = None
    operations: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # invariants broken by this operation
    findings: list[str] = field(default_factory=list)  # recovered as the docs say, but worth reporting
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Ran:
    """One dcctl command as run by the chaos run."""
    rc: int
    stdout: str
    stderr: str
    operation: str | None


def other(site: str) -> str:
    return next(s for s in SITES if s != site)


def playbook_steps(playbook: str) -> list[str]:
    """The playbook's built-in steps, but the pooler steps (no poolers on this lab: they do nothing)."""
    return [step for step in builtin_steps(playbook) if not step.endswith("_poolers")]


class Chaos:
    """The run's state: the lab, its agents and witnesses, the seeded choices, the records."""

    def __init__(self, lab: Lab, rng: random.Random, logs: Path):
        self.lab, self.rng, self.logs = lab, rng, logs
        self.config = str(lab.spec.config_path)
        self.agents: dict[str, AgentProcess] = {}
        self.records: list[Record] = []
        self.failover_losses: set[int] = set()  # acknowledged ids a failover lost (counted by a rejoin)
        self.commands = 0
        self.roles = RoleWatch(lab)
        self.writer = Writer(lab.spec.app_dsn(), rate=100, retry_delay=0.03)
        self.files = FileWriter(lab, self.roles, seed=rng.randrange(2 ** 32))

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for site in SITES:
            self.agents[site] = AgentProcess(self.config, site, self.logs / f"agent-{site}.log").start()
        self.roles.start()
        self.writer.start()
        self.writer.wait_for_commits(20)
        self.files.start()

    def stop(self) -> None:
        self.files.stop()
        self.writer.stop()
        self.roles.stop()
        for agent in self.agents.values():
            agent.stop()

    # ---- dcctl --------------------------------------------------------------------------------

    def operations_dir(self) -> Path:
        return self.lab.spec.state_dir / "operations"

    def operation_ids(self) -> set[str]:
        directory = self.operations_dir()
        return {p.name for p in directory.iterdir()} if directory.exists() else set()

    def dcctl(self, *args: str, env: dict | None = None, signal_after: tuple[float, list[int]] | None = None,
              fault: Fault | None = None) -> Ran:
        """Run the real CLI as an operator would (`--yes -o json`). signal_after: (delay, signals)
        sent to the dcctl process, 50 ms apart, `delay` seconds after its operation began, if it
        still runs then."""
        kind = next((a for a in args if a in ("switchover", "failover", "rejoin", "drill", "resume")), args[0])
        known = self.operation_ids()
        argv = [sys.executable, "-m", "dcctl", "-c", self.config, "--yes", "-o", "json", *args]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, **(env or {})))
        if signal_after:
            self._signal_later(proc, lambda: bool(self.operation_ids() - known), *signal_after, fault)
        try:
            out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err += f"\n[chaos] killed after {COMMAND_TIMEOUT:g} s"
        self.commands += 1
        self._log(argv, env, proc.returncode, out, err)
        new = sorted(op for op in self.operation_ids() - known if f"-{kind}-" in op)
        return Ran(proc.returncode, out, err, new[-1] if new else None)

    def _signal_later(self, proc: subprocess.Popen, began, delay: float, signals: list[int],
                      fault: Fault | None) -> None:
        """Signals sent `delay` seconds after the operation has begun (its journal exists): a signal
        while dcctl starts or plans only stops a command that has changed nothing."""
        def send() -> None:
            wait_until(lambda: began() or proc.poll() is not None, 30, interval=0.005)
            time.sleep(delay)
            for index, sig in enumerate(signals):
                if proc.poll() is not None:
                    if index == 0 and fault:
                        fault.injected = False
                    return
                proc.send_signal(sig)
                time.sleep(0.05)
        threading.Thread(target=send, daemon=True, name="chaos-signal").start()

    def _log(self, argv: list[str], env: dict | None, rc: int, out: str, err: str) -> None:
        with open(self.logs / "commands.log", "a") as log:
            log.write(f"\n=== {datetime.now(timezone.utc).isoformat()} rc={rc} env={env or {}}\n"
                      f"$ {' '.join(argv[3:])}\n")
            log.write(err[-6000:])
            if rc != 0:
                log.write("\n--- stdout ---\n" + out[-3000:])

    def history(self) -> dict[str, dict]:
        result = self.dcctl("history", "-n", "50")
        try:
            return {entry["operation"]: entry for entry in json.loads(result.stdout)}
        except (ValueError, TypeError):
            return {}

    def report(self, operation: str) -> dict:
        try:
            return json.loads((self.operations_dir() / operation / "report.json").read_text())
        except (OSError, ValueError):
            return {}

    # ---- the world -------------------------------------------------------------------------------

    def roles_now(self) -> dict[str, tuple[str, bool | None]]:
        """Each site's role and whether it streams, as `dcctl status` reports them (in process)."""
        from dcctl.config import load_config
        from dcctl.status_report import service_status
        from dcctl.topology import gather_view

        config = load_config(self.config)
        name, service = next(iter(config.services.items()))
        report = service_status(gather_view(config, name, service))
        return {s["site"]: (s["role"], s["streaming"]) for s in report["sites"]}

    def whole(self) -> str | None:
        """The primary, when there is exactly one and the other site streams from it."""
        current = self.roles_now()
        primaries = [site for site, (role, _) in current.items() if role == "primary"]
        streaming = [site for site, (role, on) in current.items() if role == "standby" and on]
        return primaries[0] if len(primaries) == 1 and len(streaming) == 1 else None

    def wait_whole(self, timeout: float = WHOLE_TIMEOUT) -> str | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            primary = self.whole()
            if primary:
                return primary
            time.sleep(0.2)
        return None

    def restart_dead_agents(self, record: Record) -> None:
        for site, agent in self.agents.items():
            if not agent.running():
                agent.start()
                record.notes.append(f"agent {site} restarted")

    # ---- faults ------------------------------------------------------------------------------

    def dcctl_fault(self, playbook: str) -> tuple[Fault | None, dict, tuple[float, list[int]] | None]:
        """No fault, a test-hook crash at a step, or a real signal after a delay."""
        roll = self.rng.random()
        if roll < 0.3:
            return None, {}, None
        if roll < 0.7:
            step = self.rng.choice(playbook_steps(playbook))
            if self.rng.random() < 0.25:
                return Fault("step-hook", f"DCCTL_FAULT_AFTER_STEP={step}"), {"DCCTL_FAULT_AFTER_STEP": step}, None
            moment, how = self.rng.choice(("start", "end")), self.rng.choice(("kill", "kill", "sigint"))
            value = f"{step}:{moment}:{how}"
            return Fault("step-hook", f"DCCTL_FAULT_AT={value}"), {"DCCTL_FAULT_AT": value}, None
        delay = round(self.rng.uniform(0.0, 0.8), 3)  # after the journal exists; most operations take ~1 s
        choice = self.rng.choice(("kill", "kill", "sigint", "sigint-twice"))
        signals = {"kill": [signal.SIGKILL], "sigint": [signal.SIGINT],
                   "sigint-twice": [signal.SIGINT, signal.SIGINT]}[choice]
        return Fault("signal", f"{choice} {delay} s into the operation"), {}, (delay, signals)

    def maybe_kill_agent(self, record: Record) -> None:
        """With some chance, kill -9 an agent at a random moment of the coming operation."""
        if self.rng.random() >= 0.15:
            return
        site, delay = self.rng.choice(SITES), round(self.rng.uniform(0.0, 2.0), 3)
        fault = Fault("agent-kill", f"agent {site} after {delay} s")
        record.faults.append(fault)
        agent = self.agents[site]

        def kill() -> None:
            time.sleep(delay)
            if agent.running():
                agent.proc.kill()
            else:
                fault.injected = False
        threading.Thread(target=kill, daemon=True, name="chaos-agent-kill").start()

    # ---- recovery, as the docs say ---------------------------------------------------------------

    def finish(self, record: Record, ran: Ran, args: tuple[str, ...]) -> str:
        """Drive an operation to an end as the docs say; its final outcome."""
        operation = ran.operation
        if operation is None:
            if ran.rc == 0:
                return "success"
            lock_owner = self.stale_lock_owner(ran.stderr)
            if lock_owner:  # docs: a lock whose process is gone is stale; `resume` takes it over
                record.recovery.append(f"resume {lock_owner} (stale lock)")
                self.finish(record, self.dcctl("resume", lock_owner), ("resume", lock_owner))
                return self.finish(record, self.dcctl(*args), args)
            if ran.rc in (-signal.SIGKILL, -signal.SIGINT, 130, 99):  # stopped before it journaled anything
                return f"stopped before it began (rc {ran.rc})"
            return f"refused (rc {ran.rc}): {last_line(ran.stderr)}"
        record.operations.append(operation)
        for attempt in range(4):
            outcome = self.history().get(operation, {}).get("outcome") or "unknown"
            if outcome not in UNFINISHED and not (outcome == "failed" and "dcctl resume" in ran.stderr):
                return outcome
            if attempt == 3:
                break
            record.recovery.append(f"resume ({outcome})")
            ran = self.dcctl("resume", operation)
            if ran.rc == 5 and "superseded" in ran.stderr:
                return "superseded"
        record.findings.append(f"`dcctl resume {operation}` did not end it (3 times): {last_line(ran.stderr)}")
        return outcome

    @staticmethod
    def stale_lock_owner(stderr: str) -> str | None:
        import re

        match = re.search(r"locked by operation (\S+)", stderr)
        if match and ("STALE" in stderr or "stale" in stderr):
            return match.group(1).rstrip(".,;:")
        return None

    def resume_others_left_unfinished(self, record: Record, ran: Ran, before: set[str]) -> None:
        """`dcctl history` may list another operation left unfinished (a full drill's own
        switchover): the docs say to resume it too. When the command that left it (one started
        after `before`) did not name it, that is worth reporting."""
        for _ in range(3):  # resuming one may let another (its parent) end
            unfinished = sorted((entry["started_at"], operation, entry) for operation, entry in self.history().items()
                                if entry["outcome"] in UNFINISHED)
            if not unfinished:
                return
            for _, operation, entry in unfinished:
                record.recovery.append(f"resume {operation} ({entry['outcome']}, found in history)")
                if operation not in before and (operation not in ran.stderr or "dcctl resume" not in ran.stderr):
                    record.findings.append(f"{entry['kind']} {operation} was left {entry['outcome']} and the "
                                           f"command (rc {ran.rc}) did not say to resume it: {last_line(ran.stderr)}")
                self.finish(record, self.dcctl("resume", operation), ("resume", operation))

    def run_operation(self, record: Record, *args: str, crash: bool = True,
                      playbook: str | None = None) -> tuple[str, Ran]:
        """Run it (with a random dcctl fault when `crash`: at a step of `playbook`, by default the
        command's own), then finish it as the docs say."""
        playbook = playbook or (args[0] if args[0] != "drill" or "full" not in args else "drill_full")
        fault, env, signal_after = self.dcctl_fault(playbook) if crash else (None, {}, None)
        if fault:
            record.faults.append(fault)
        before = self.operation_ids()
        ran = self.dcctl(*args, env=env, signal_after=signal_after, fault=fault)
        outcome = self.finish(record, ran, args)
        if fault or ran.rc != 0:
            self.resume_others_left_unfinished(record, ran, before)
        return outcome, ran

    # ---- operations --------------------------------------------------------------------------------

    def op_switchover(self, record: Record) -> None:
        if self.rng.random() < SITE_SHARE:
            # The same move through the site executor: its recovery plan, site journal and site
            # lock, and `dcctl resume SITEOP` when it is cut off.
            record.kind = "site-switchover"
            record.outcome, _ = self.run_operation(record, "site", "switchover", "--to",
                                                   other(record.primary_before), playbook="switchover")
        else:
            record.outcome, _ = self.run_operation(record, "switchover")

    def op_drill(self, record: Record) -> None:
        full = self.rng.random() < 0.3
        record.kind = "drill-full" if full else "drill"
        record.outcome, _ = self.run_operation(record, "drill", *(["--mode", "full"] if full else []))

    def op_files(self, record: Record) -> None:
        primary = record.primary_before
        burst = self.files.write_burst(primary, self.rng.randint(10, 40))
        self.restart_dead_agents(record)
        late = self.files.wait_synced(burst, timeout=30)
        record.outcome = "synced" if not late else f"{len(late)} of {len(burst)} not at {other(primary)} after 30 s"

    def op_failover(self, record: Record) -> None:
        old, new = record.primary_before, other(record.primary_before)
        how = self.rng.choice(("postmaster-kill", "postmaster-kill", "freeze", "freeze", "healthy"))
        frozen: list[int] = []
        args: tuple[str, ...] = ("failover",)
        pid = self.lab.running(old)
        if how == "postmaster-kill" and pid:
            record.faults.append(Fault("postmaster-kill", f"postmaster of {old} (pid {pid})"))
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not cmdline(pid), 10)
        elif how == "healthy":
            record.notes.append(f"failover of a healthy primary: dcctl fences {old} itself")
        elif how == "freeze" and pid:
            frozen = freeze_tree(pid)
            record.faults.append(Fault("freeze", f"{len(frozen)} PostgreSQL processes of {old}"))
            time.sleep(self.rng.uniform(0.0, 1.0))
            args = ("failover", "--primary-is-down", "--confirm-site", old)
        outcome, _ = self.run_operation(record, *args)
        if outcome != "success" and outcome != "superseded":
            # Rolled back (nothing promoted), or stopped before it began: the old primary is still
            # down, so the operator fails over again.
            record.recovery.append(f"failover again ({outcome.split(':')[0]})")
            outcome, _ = self.run_operation(record, *args, crash=False)
        thaw(frozen)
        record.outcome = f"failover {outcome}"
        failover_op = record.operations[-1] if record.operations else None
        record.failover_verdict = self.report(failover_op).get("data_loss") if failover_op else None
        if outcome != "success":
            return
        record.lost_commits = self.newly_missing()
        self.failover_losses.update(record.lost_commits)
        self.rejoin(record, old)

    def rejoin(self, record: Record, site: str) -> None:
        args: tuple[str, ...] = ("rejoin", "--site", site)
        outcome, ran = self.run_operation(record, *args)
        if outcome != "success":
            if outcome.startswith("refused") and "--allow-reclone" in ran.stderr:
                record.recovery.append("rejoin --allow-reclone (as its refusal says)")
                args = (*args, "--allow-reclone")
            else:  # rolled back, superseded, or stopped before it began
                record.recovery.append(f"rejoin again ({outcome.split(':')[0]})")
            outcome, ran = self.run_operation(record, *args, crash=False)
        record.outcome += f", rejoin {outcome}"
        if outcome == "success" and record.operations:
            record.diverged_commits = self.report(record.operations[-1]).get("observed", {}).get("diverged_commits")

    # ---- verification --------------------------------------------------------------------------------

    def newly_missing(self) -> list[int]:
        """Acknowledged commits missing at the primary, but those failovers already lost."""
        acknowledged = [a for a in list(self.writer.stats.acknowledged) if a[0] not in self.failover_losses]
        return missing_ids(self.lab.spec.app_dsn(), acknowledged)

    def make_whole(self, record: Record) -> str | None:
        """The pair whole again; each thing done that the docs do not prescribe is a hand repair."""
        primary = self.wait_whole()
        if primary:
            return primary
        current = self.roles_now()
        primaries = [site for site, (role, _) in current.items() if role == "primary"]
        if len(primaries) != 1:
            record.problems.append(f"not one primary after recovery: {current}")
            return None
        standby = other(primaries[0])
        repair = ("rejoin", "--site", standby, "--force", "--allow-reclone", "--break-lock")
        record.hand_repairs.append(f"{' '.join(repair)} (roles {current})")
        ran = self.dcctl(*repair)
        primary = self.wait_whole(30)
        if not primary:
            repair = ("replication", "init", "--to", standby, "--force")
            record.hand_repairs.append(f"{' '.join(repair)} (rejoin rc {ran.rc}: {last_line(ran.stderr)})")
            self.dcctl(*repair)
            primary = self.wait_whole(30)
        if not primary:
            record.problems.append(f"the pair could not be made whole: {self.roles_now()}")
        return primary

    def verify(self, record: Record) -> None:
        self.restart_dead_agents(record)
        record.primary_after = self.make_whole(record)
        if record.primary_after is None:
            return
        try:
            self.writer.wait_for_commits(10, timeout=30)
        except TimeoutError:
            record.problems.append("the writer could not commit for 30 s after the recovery")
        missing = self.newly_missing()
        if record.kind == "failover":
            extra = [i for i in missing if i not in record.lost_commits]
            if extra:
                record.problems.append(f"{len(extra)} acknowledged commits missing after the rejoin, beyond the "
                                       f"{len(record.lost_commits)} the failover lost: {extra[:10]}")
            self.judge_failover_loss(record)
        elif missing:
            record.lost_commits = missing
            record.problems.append(f"{len(missing)} acknowledged commits lost: {missing[:10]}")
        self.failover_losses.update(missing)  # counted once
        lost_files = self.files.lost()
        if lost_files:
            record.problems.append(f"{len(lost_files)} synced documents missing at both sites: "
                                   f"{[d.relative for d in lost_files[:5]]}; copies at "
                                   f"{[self.files.where_is(d) for d in lost_files[:3]]}")

    def judge_failover_loss(self, record: Record) -> None:
        """A failover may lose commits; its report must say so, and the rejoin must count them."""
        lost = len(record.lost_commits)
        if not lost:
            return
        if not (record.failover_verdict or "").startswith("possible"):
            record.problems.append(f"{lost} commits lost, the failover report said: {record.failover_verdict}")
        if record.diverged_commits is None:
            record.problems.append(f"{lost} commits lost, no rejoin counted the divergence")
        elif record.diverged_commits < lost:
            record.problems.append(f"{lost} acknowledged commits lost, the rejoin counted "
                                   f"{record.diverged_commits} diverged commits")

    # ---- the run ---------------------------------------------------------------------------------

    def one(self, index: int) -> Record:
        kind = self.rng.choices(list(OPERATIONS), weights=list(OPERATIONS.values()))[0]
        record = Record(index, kind)
        started = time.monotonic()
        record.primary_before = self.whole() or self.make_whole(record)
        if record.primary_before is None:
            record.problems.append("no whole pair to start from")
            return record
        self.maybe_kill_agent(record)
        try:
            getattr(self, f"op_{kind}")(record)
            self.verify(record)
        except Exception as exc:  # noqa: BLE001 - a failure of the run is a finding, not the end of it
            import traceback

            with open(self.logs / "commands.log", "a") as log:
                log.write(f"\n=== operation {index}: {traceback.format_exc()}")
            record.problems.append(f"the chaos run itself failed: {type(exc).__name__}: {exc}")
        record.seconds = round(time.monotonic() - started, 2)
        return record


def cmdline(pid: int) -> bytes:
    """A process's command line; empty once it has exited (a zombie has none)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def describe(record: Record) -> str:
    faults = ", ".join(f"{f.kind}: {f.detail}{'' if f.injected else ' (too late: not injected)'}"
                       for f in record.faults) or "no fault"
    line = (f"#{record.index:>3} {record.kind:<10} {record.primary_before}->{record.primary_after} "
            f"[{faults}] -> {record.outcome}")
    if record.recovery:
        line += f"; recovery: {'; '.join(record.recovery)}"
    if record.lost_commits:
        line += f"; lost {len(record.lost_commits)} (rejoin counted {record.diverged_commits})"
    if record.hand_repairs:
        line += f"; HAND REPAIRS: {record.hand_repairs}"
    if record.findings:
        line += f"; FINDINGS: {record.findings}"
    if record.problems:
        line += f"; BROKEN: {record.problems}"
    return line + f" ({record.seconds:.1f} s)"


def totals(chaos: Chaos, two: dict, lost_files: list, seed: int, ops: int, wall: float) -> dict:
    records = chaos.records
    by_kind = Counter(f"{r.kind}: {outcome_class(r)}" for r in records)
    faults = Counter(f.kind for r in records for f in r.faults if f.injected)
    not_injected = Counter(f.kind for r in records for f in r.faults if not f.injected)
    planned_lost = sum(len(r.lost_commits) for r in records if r.kind != "failover")
    failover_lost = sum(len(r.lost_commits) for r in records if r.kind == "failover")
    failover_counted = sum(r.diverged_commits or 0 for r in records if r.kind == "failover" and r.lost_commits)
    problems = [f"#{r.index} {p}" for r in records for p in r.problems]
    if two["seconds"] > 0 or two["samples_caught"] > 0:
        problems.append(f"two writable primaries: {two}")
    if lost_files:
        problems.append(f"{len(lost_files)} synced documents missing at both sites at the end")
    return {
        "seed": seed, "ops": ops, "wall_seconds": round(wall, 1), "dcctl_commands": chaos.commands,
        "operations": dict(sorted(by_kind.items())), "faults_injected": dict(sorted(faults.items())),
        "faults_not_injected": dict(sorted(not_injected.items())),
        "acknowledged_commits": len(chaos.writer.stats.acknowledged),
        "lost_commits_switchover_drill": planned_lost,
        "lost_commits_failover": failover_lost, "diverged_commits_counted_by_rejoins": failover_counted,
        "two_primaries": two, "documents": chaos.files.summary(), "documents_lost": len(lost_files),
        "recovery_actions": dict(sorted(Counter(recovery_kind(step) for r in records for step in r.recovery).items())),
        "failovers": failover_figures(records),
        "hand_repairs": sum(len(r.hand_repairs) for r in records),
        "findings": [f"#{r.index} {f}" for r in records for f in r.findings],
        "problems": problems,
    }


def recovery_kind(step: str) -> str:
    """'resume (unfinished)' -> 'resume'; 'resume OP (halted, found in history)' -> 'resume another
    operation found in history'."""
    if "found in history" in step:
        return "resume another operation found in history"
    if "stale lock" in step:
        return "resume the owner of a stale lock"
    return step.split(" (")[0]


def failover_figures(records: list[Record]) -> dict:
    failovers = [r for r in records if r.kind == "failover"]
    with_loss = [r for r in failovers if r.lost_commits]
    under_counted = [r for r in with_loss if (r.diverged_commits or 0) < len(r.lost_commits)]
    return {"count": len(failovers), "with_lost_commits": len(with_loss),
            "rejoin_counted_fewer_than_lost": len(under_counted),
            "lost_and_counted": [(len(r.lost_commits), r.diverged_commits) for r in with_loss]}


def outcome_class(record: Record) -> str:
    return record.outcome.split(":")[0] if record.outcome else "?"


def print_summary(result: dict) -> None:
    print(f"chaos run: seed {result['seed']}, {result['ops']} operations, {result['wall_seconds']} s, "
          f"{result['dcctl_commands']} dcctl commands")
    print("operations (kind: outcome):")
    for name, count in result["operations"].items():
        print(f"  {count:>4}  {name}")
    print("faults injected: " + (", ".join(f"{k} {v}" for k, v in result["faults_injected"].items()) or "none"))
    if result["faults_not_injected"]:
        print("faults too late (dcctl had ended): "
              + ", ".join(f"{k} {v}" for k, v in result["faults_not_injected"].items()))
    print(f"acknowledged commits: {result['acknowledged_commits']}")
    print(f"lost acknowledged commits, switchovers and drills: {result['lost_commits_switchover_drill']} (must be 0)")
    print(f"lost acknowledged commits, failovers: {result['lost_commits_failover']}; diverged commits counted by "
          f"the rejoins of those failovers: {result['diverged_commits_counted_by_rejoins']} (must be >= lost, and "
          f"each failover report said 'possible')")
    failovers = result["failovers"]
    print(f"failovers: {failovers['count']}, {failovers['with_lost_commits']} lost acknowledged commits (lost, counted "
          f"by the rejoin: {failovers['lost_and_counted']}); rejoin counted fewer than lost: "
          f"{failovers['rejoin_counted_fewer_than_lost']} (must be 0)")
    print("recovery, as the docs say: " + (", ".join(f"{k} {v}" for k, v in result["recovery_actions"].items())
                                           or "none needed"))
    two = result["two_primaries"]
    print(f"two writable primaries: {two['seconds']} s, {two['samples_caught']} samples "
          f"(of {two['samples']}) (must be 0)")
    docs = result["documents"]
    print(f"documents: {docs['written']} written, {docs['synced']} seen at the other site; lost: "
          f"{result['documents_lost']} (must be 0)")
    print(f"hand repairs: {result['hand_repairs']} (goal 0)")
    if result["findings"]:
        print("findings (recovered as the docs say, but worth a look):")
        for finding in result["findings"]:
            print(f"  - {finding}")
    print("invariants: " + ("all held" if not result["problems"] else "BROKEN"))
    for problem in result["problems"]:
        print(f"  - {problem}")


def wait_files_settled(config: str, timeout: float = 30.0) -> None:
    from dcctl.lab.demo import wait_filesync_settled

    wait_filesync_settled(config, timeout)


def run(args) -> int:
    # Started in the background by a shell, we inherit SIGINT ignored, and so would every dcctl we
    # start (until it sets its own handler): a Ctrl-C sent as dcctl starts would do nothing. A
    # handler here is reset to the default in the children, as at a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still take the lab down
    root = Path(args.dir) if args.dir else new_root("chaos-")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    base_port = args.base_port or free_port_block()
    say(f"chaos: seed {args.seed}, {args.ops} operations, lab in {root / 'lab'} (ports from {base_port}), "
        f"logs in {logs}")
    started_at, started = datetime.now(timezone.utc), time.monotonic()
    lab = Lab.up(root / "lab", base_port=base_port, transport="local")
    chaos = Chaos(lab, random.Random(args.seed), logs)
    result: dict = {}
    try:
        chaos.start()
        for index in range(1, args.ops + 1):
            record = chaos.one(index)
            chaos.records.append(record)
            say(describe(record))
            if any("not one primary" in p or "could not be made whole" in p for p in record.problems):
                say("chaos: stopping, the pair is broken")
                break
        chaos.restart_dead_agents(Record(0, "end"))
        wait_files_settled(chaos.config)
        lost_files = chaos.files.lost()
        chaos.stop()
        two = chaos.roles.two_primaries()
        result = totals(chaos, two, lost_files, args.seed, len(chaos.records), time.monotonic() - started)
    finally:
        chaos.stop()
        if not result or result["problems"] or args.keep:
            shutil.copytree(lab.spec.state_dir, logs / "state", dirs_exist_ok=True)
            for site in SITES:
                shutil.copy(lab.spec.pg_log(site), logs / f"postgresql-{site}.log")
        if args.keep:
            say(f"chaos: --keep: lab left in {root / 'lab'}")
        else:
            lab_down(root / "lab")
    result.update(started_at=started_at.isoformat(timespec="seconds"), machine=machine(),
                  records=[asdict(r) for r in chaos.records])
    print_summary(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    if not result["problems"] and not args.keep and not args.dir:
        shutil.rmtree(root, ignore_errors=True)
    else:
        say(f"chaos: logs kept in {logs}")
    return 1 if result["problems"] else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=20, help="how many operations")
    parser.add_argument("--seed", type=int, default=1, help="the seed of every random choice")
    parser.add_argument("--json", help="write the figures and every operation's record there")
    parser.add_argument("--base-port", type=int, help="the lab's first port (default: a free block)")
    parser.add_argument("--dir", help="directory for the lab and the logs (default: a new /tmp/chaos-*)")
    parser.add_argument("--keep", action="store_true", help="leave the lab running afterwards")
    sys.exit(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
