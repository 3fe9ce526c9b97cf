"""A fenced old primary that comes back, on the real lab (docs/reliability.md, section 3).

Each scenario freezes processes by PID (SIGSTOP on the process trees the lab and the test
started), while a client writes directly to the primary's address, as an application that never
heard of the failover would. It counts the commits PostgreSQL acknowledged after the fault, and
which of them the surviving site does not have. The figures are printed (pytest -s) for the docs.
"""
import json
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
import yaml

from dcctl.lab import procs
from dcctl.lab.faults import freeze_tree, thaw
from dcctl.lab.agents import AgentProcess
from dcctl.lab.lab import Lab, lab_down
from tests.integration.agent_fixtures import metric_value, scrape
from tests.integration.conftest import app_connect, dcctl, free_port_block, wait_for

pytestmark = pytest.mark.lab
OLD, NEW = "rabat", "backup"


# ---- the harness -------------------------------------------------------------------------------

@pytest.fixture
def lab_dir():
    root = Path(tempfile.mkdtemp(prefix="dcctl-zombie-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    lab_down(root / "lab")
    shutil.rmtree(root, ignore_errors=True)


def make_lab(root: Path, transport: str) -> Lab:
    lab = Lab.up(root / "lab", base_port=free_port_block(), transport=transport)
    with app_connect(lab, OLD) as conn:
        conn.execute("CREATE TABLE zombie (id bigint PRIMARY KEY)")
    return lab


def agent_config(lab: Lab, root: Path, *, mode: str = "async", watch: float = 0.5, relax_after: float = 10.0,
                 isolation: float | None = None, witness: str | None = None) -> str:
    """The lab's config for the agents. Their own state_dir: on a frozen host, the old primary's
    agent cannot read the record the failover wrote where dcctl ran, only what it can ask."""
    data = yaml.safe_load(lab.spec.config_path.read_text())
    data["state_dir"] = str(root / "agent-state")
    service = data["services"]["massar"]
    service["replication"] = {"mode": mode, "relax_after": relax_after}
    for site in service["sites"].values():
        site["agent"].update(watch_interval=watch, isolation_fence_after=isolation, witness=witness)
    path = root / f"agents-{mode}-{watch:g}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def start_agents(config: str, root: Path) -> dict[str, AgentProcess]:
    agents = {site: AgentProcess(config, site, root / f"agent-{site}.log") for site in (OLD, NEW)}
    for agent in agents.values():
        agent.start()
    return agents


def stop_agents(agents: dict[str, AgentProcess]) -> None:
    for agent in agents.values():
        agent.stop()
        print(f"--- agent {agent.site} log (tail):\n" + "\n".join(agent.log_text().splitlines()[-15:]))


class Freezer:
    """SIGSTOP process trees by PID; thaw() (also on the way out) sends SIGCONT to the same PIDs."""

    def __init__(self):
        self.frozen: list[int] = []

    def freeze(self, *roots: int) -> None:
        for root in roots:
            self.frozen += freeze_tree(root)

    def thaw(self) -> None:
        thaw(self.frozen)
        self.frozen = []


class Writer(threading.Thread):
    """A client committing one row at a time directly to a site's address, reconnecting on errors;
    it keeps, per acknowledged commit, when it was sent and when acknowledged (monotonic)."""

    def __init__(self, lab: Lab, site: str):
        super().__init__(daemon=True)
        self.lab, self.site = lab, site
        self.acked: list[tuple[int, float]] = []  # (id, acknowledged at)
        self.sent: dict[int, float] = {}
        self.halt = threading.Event()
        self.next_id = 0

    def run(self) -> None:
        conn = None
        while not self.halt.is_set():
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = psycopg.connect(host="127.0.0.1", port=self.lab.spec.pg_port(self.site), dbname="massar",
                                           user="postgres", passfile=str(self.lab.spec.pgpass), autocommit=True,
                                           connect_timeout=2)
                self.next_id += 1
                self.sent[self.next_id] = time.monotonic()
                conn.execute("INSERT INTO zombie VALUES (%s)", (self.next_id,))
                self.acked.append((self.next_id, time.monotonic()))
            except psycopg.Error:
                time.sleep(0.02)

    def acked_after(self, moment: float) -> list[tuple[int, float]]:
        return [(i, at) for i, at in self.acked if at > moment]

    def sent_and_acked_after(self, moment: float) -> list[tuple[int, float]]:
        """Commits sent after `moment` and acknowledged: none of them can have been waiting for a
        standby that was already cut off when they were sent."""
        return [(i, at) for i, at in self.acked if self.sent[i] > moment]

    def stop(self) -> None:
        self.halt.set()
        if self.is_alive():
            self.join(30)


def rows_on(lab: Lab, site: str) -> set[int]:
    with app_connect(lab, site) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM zombie")}


def setting(lab: Lab, site: str, name: str) -> str:
    with app_connect(lab, site) as conn:
        return conn.execute("SELECT pg_catalog.current_setting(%s)", (name,)).fetchone()[0]


def sync_state(lab: Lab) -> str | None:
    with app_connect(lab, OLD) as conn:
        row = conn.execute("SELECT sync_state FROM pg_stat_replication WHERE application_name = %s", (NEW,)).fetchone()
    return row[0] if row else None


def caught_up(lab: Lab) -> bool:
    with app_connect(lab, OLD) as conn:
        row = conn.execute("SELECT replay_lsn = pg_current_wal_lsn() FROM pg_stat_replication").fetchone()
    return bool(row and row[0])


def standby_required(agent: AgentProcess) -> float | None:
    status, text = scrape(f"{agent.url}/metrics")
    assert status == 200
    return metric_value(text, "dcctl_sync_standby_required", service="massar", site=agent.site)


def report(name: str, **figures) -> None:
    print(f"\nFIGURES {name}: {json.dumps(figures)}")


# ---- item 2: two primaries on one timeline ------------------------------------------------------

def start_standby_as_primary(lab: Lab) -> None:
    """What a careless restart does: the standby without standby.signal comes up as a primary on
    its primary's timeline (crash recovery, no promotion, no new timeline)."""
    lab.stop(NEW)
    (lab.spec.pgdata(NEW) / "standby.signal").unlink()
    lab.start(NEW)


def generation_checks(config: str) -> list[dict]:
    result = dcctl("check", "-o", "json", "--check", "generation", config=config, check=False)
    assert result.returncode == 2, result.stderr
    return json.loads(result.stdout)["services"][0]["checks"]


def test_two_primaries_on_one_timeline_without_a_record_are_named_and_left_running(lab_dir):
    lab = make_lab(lab_dir, "local")
    config = str(lab.spec.config_path)
    start_standby_as_primary(lab)
    [crit] = generation_checks(config)
    assert crit["status"] == "CRIT" and crit["site"] is None
    assert crit["detail"].startswith("TWO PRIMARIES: backup and rabat both run as primaries on timeline 1 and no "
                                     "generation is recorded")
    running = {site: lab.running(site) for site in (OLD, NEW)}
    for site in (OLD, NEW):
        once = dcctl("agent", "run", "--site", site, "--once", config=config, check=False)
        assert "STALE PRIMARY" not in once.stderr
    assert {site: lab.running(site) for site in (OLD, NEW)} == running  # nobody guessed


def test_two_primaries_on_one_timeline_the_recorded_one_stays(lab_dir):
    lab = make_lab(lab_dir, "local")
    config = str(lab.spec.config_path)
    record = {"service": "massar", "generation": 1, "primary": OLD, "fenced": [], "operation": None, "at": 1.0}
    (lab.spec.state_dir / "massar.generation.json").write_text(json.dumps(record))
    start_standby_as_primary(lab)
    [crit] = generation_checks(config)
    assert crit["site"] == NEW and crit["detail"].startswith(
        "STALE PRIMARY backup: backup and rabat both run as primaries on timeline 1, and the recorded generation 1 "
        "names rabat")
    stale = lab.running(NEW)
    once = dcctl("agent", "run", "--site", NEW, "--once", config=config, check=False)
    assert "STALE PRIMARY: backup and rabat both run as primaries on timeline 1" in once.stderr
    wait_for(lambda: not procs.alive(stale), what="the stale primary to be stopped by its agent")
    assert (lab.spec.pgdata(NEW) / "standby.signal").exists()
    assert lab.running(OLD)


# ---- item 3: a frozen host comes back after the failover ----------------------------------------

@pytest.mark.parametrize("mode, watch", [("async", 0.0), ("async", 0.5), ("sync", 0.5)],
                         ids=["async-no-watch", "async-watch", "sync-watch"])
def test_a_frozen_then_thawed_old_primary_acknowledges_nothing_the_new_primary_lacks(lab_dir, mode, watch):
    lab = make_lab(lab_dir, "ssh")
    agents = start_agents(agent_config(lab, lab_dir, mode=mode, watch=watch), lab_dir)
    freezer, writer = Freezer(), Writer(lab, OLD)
    try:
        if mode == "sync":
            wait_for(lambda: sync_state(lab) == "sync", what="backup to be rabat's synchronous standby")
            wait_for(lambda: setting(lab, NEW, "synchronous_standby_names") == '"rabat"',
                     what="the standby to name rabat, ready for its promotion")
        writer.start()
        wait_for(lambda: len(writer.acked) > 50, what="the writer to commit")
        freezer.freeze(agents[OLD].pid, lab.running(OLD), lab.sshds()[OLD].pid)
        frozen_at = time.monotonic()
        done = dcctl("--yes", "-o", "json", "failover", "--primary-is-down", "--confirm-site", OLD,
                     config=str(lab.spec.config_path))
        assert json.loads(done.stdout)["outcome"] == "success"
        old_pid = lab.running(OLD)
        thawed_at = time.monotonic()
        freezer.thaw()
        wait_for(lambda: not procs.alive(old_pid), timeout=60, interval=0.01, what="the old primary to be fenced")
        fenced_at = time.monotonic()
        writer.stop()
        after = writer.acked_after(frozen_at)
        on_new = rows_on(lab, NEW)
        missing = [i for i, _ in after if i not in on_new]
        report(f"frozen-host {mode} watch={watch:g}", acked_after_freeze=len(after),
               acked_after_freeze_missing_on_new_primary=len(missing),
               last_ack_after_thaw_s=round(max([at for _, at in after], default=thawed_at) - thawed_at, 3),
               fenced_after_thaw_s=round(fenced_at - thawed_at, 3))
        wait_for(lambda: (lab.spec.pgdata(OLD) / "standby.signal").exists(), what="standby.signal after the fence")
        log = agents[OLD].log_text()
        assert "STALE PRIMARY: rabat runs as a primary on timeline 1 while backup runs as a primary on the newer " \
               "timeline 2" in log or "the recorded generation 2 belongs to backup" in log, log[-3000:]
        if mode == "sync":
            assert missing == []
            # The new primary does not wait for the fenced one: its agent read the failover's record.
            wait_for(lambda: setting(lab, NEW, "synchronous_standby_names") == "", what="the new primary released")
            with app_connect(lab, NEW) as conn:
                conn.execute("INSERT INTO zombie VALUES (-1)")
    finally:
        freezer.thaw()
        writer.stop()
        stop_agents(agents)


# ---- item 3: the standby site is cut off (frozen): what the primary acknowledges alone ----------

def freeze_standby_site(lab: Lab, agents, freezer: Freezer) -> float:
    """Freeze the standby site; the moment every process of it has actually stopped (SIGSTOP is
    delivered asynchronously: a busy process runs on for a moment after kill() returns)."""
    freezer.freeze(agents[NEW].pid, lab.running(NEW))
    wait_for(lambda: all(stopped_or_gone(pid) for pid in freezer.frozen), timeout=10, interval=0.001,
             what="the standby site's processes stopped")
    return time.monotonic()


def stopped_or_gone(pid: int) -> bool:
    """Stopped (T, t), or gone: exited (a zombie, Z or X, stays one while its frozen parent cannot
    reap it) or reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t", "Z", "X")
    except OSError:
        return True


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_an_isolated_primary_stops_itself_after_isolation_fence_after(lab_dir, mode):
    lab = make_lab(lab_dir, "local")
    isolation = 3.0
    agents = start_agents(agent_config(lab, lab_dir, mode=mode, relax_after=60.0, isolation=isolation), lab_dir)
    freezer, writer = Freezer(), Writer(lab, OLD)
    try:
        if mode == "sync":
            wait_for(lambda: sync_state(lab) == "sync", what="backup to be rabat's synchronous standby")
        writer.start()
        wait_for(lambda: len(writer.acked) > 50, what="the writer to commit")
        primary_pid = lab.running(OLD)
        cut_at = freeze_standby_site(lab, agents, freezer)
        wait_for(lambda: not procs.alive(primary_pid), timeout=60, interval=0.01,
                 what="the isolated primary to stop itself")
        stopped_at = time.monotonic()
        writer.stop()
        after = writer.acked_after(cut_at)
        report(f"isolation {mode} isolation_fence_after={isolation:g}", acked_after_cut=len(after),
               stopped_after_cut_s=round(stopped_at - cut_at, 3),
               last_ack_after_cut_s=round(max([at for _, at in after], default=cut_at) - cut_at, 3))
        assert "ISOLATED PRIMARY: rabat has reached neither backup's PostgreSQL nor its agent" in \
            agents[OLD].log_text()
        wait_for(lambda: (lab.spec.pgdata(OLD) / "standby.signal").exists(), what="standby.signal after the fence")
        if mode == "sync":
            assert after == []  # every commit waited for the cut-off standby until the primary stopped
        # The runbook's way back when no failover happened: the standby is still on the same timeline.
        freezer.thaw()
        (lab.spec.pgdata(OLD) / "standby.signal").unlink()
        dcctl("node", "start", "--site", OLD, config=str(lab.spec.config_path))
        lab.wait_streaming(NEW)
        with app_connect(lab, OLD) as conn:
            assert conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0]
    finally:
        freezer.thaw()
        writer.stop()
        stop_agents(agents)


def test_a_primary_that_sees_the_witness_stays_up_and_sync_relaxes_after_relax_after(lab_dir):
    lab = make_lab(lab_dir, "local")
    witness = socket.create_server(("127.0.0.1", 0))  # a third place the primary can still reach
    relax_after = 3.0
    agents = start_agents(agent_config(lab, lab_dir, mode="sync", relax_after=relax_after, isolation=1.0,
                                       witness=f"127.0.0.1:{witness.getsockname()[1]}"), lab_dir)
    freezer, writer = Freezer(), Writer(lab, OLD)
    try:
        wait_for(lambda: sync_state(lab) == "sync", what="backup to be rabat's synchronous standby")
        writer.start()
        wait_for(lambda: len(writer.acked) > 50, what="the writer to commit")
        wait_for(lambda: caught_up(lab), what="backup to have every commit")
        cut_at = freeze_standby_site(lab, agents, freezer)
        wait_for(lambda: writer.sent_and_acked_after(cut_at), timeout=60, interval=0.01,
                 what="commits after the relax")
        first = writer.sent_and_acked_after(cut_at)[0][1] - cut_at
        time.sleep(1.0)
        alone = len(writer.sent_and_acked_after(cut_at))
        report(f"partition sync relax_after={relax_after:g} witness reachable", first_ack_after_cut_s=round(first, 3),
               acked_in_the_next_second=alone)
        # Nothing was acknowledged alone before relax_after (less the watch's interval: the standby
        # was last seen streaming up to one interval before it froze).
        assert first >= relax_after - 0.5 - 0.1
        assert lab.running(OLD) and "stop waiting for it" in agents[OLD].log_text()
        assert setting(lab, OLD, "synchronous_standby_names") == ""
        assert standby_required(agents[OLD]) == 0.0  # DcctlCommitsOnOneSite
        freezer.thaw()
        wait_for(lambda: sync_state(lab) == "sync", what="the standby to be synchronous again")
        assert setting(lab, OLD, "synchronous_standby_names") == '"backup"'
        wait_for(lambda: standby_required(agents[OLD]) == 1.0, what="the metric to say commits wait again")
    finally:
        freezer.thaw()
        writer.stop()
        stop_agents(agents)
        witness.close()
