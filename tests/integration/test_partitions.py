"""Partitions on a lab whose sites are hosts: `lab up --isolation netns` puts each site in its own
network namespace (198.18.1.1 rabat, 198.18.2.1 backup); the tests and dcctl run in the root
namespace, the operator's side. Root only."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from dcctl.errors import RefusedError
from dcctl.lab import netfaults, netns
from dcctl.lab.agents import AgentProcess
from dcctl.lab.lab import Lab, lab_down
from dcctl.lab.layout import SITES
from dcctl.lab.writer import Writer, missing_ids, read_acknowledged
from tests.integration.conftest import config_variant, dcctl, status_json, wait_for


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` is not available here"
    if shutil.which("nft") is None:
        return "nft is not installed (scripts/setup.sh installs nftables)"
    if netns.leftovers(SITES):
        return f"another netns lab exists: {', '.join(netns.leftovers(SITES))}"
    return None


needs_netns = pytest.mark.skipif(_netns_unavailable() is not None, reason=_netns_unavailable() or "")


@pytest.fixture(scope="module")
def netns_lab():
    root = Path(tempfile.mkdtemp(prefix="dcctl-netns-", dir="/tmp"))
    root.chmod(0o755)
    lab_ = Lab.up(root / "lab", transport="ssh", isolation="netns")
    yield lab_
    for site in SITES:
        if netns.namespace(site) in netns.namespaces():
            netfaults.heal(site)
    lab_down(lab_.spec.dir)
    root.rmdir()


def sites_by_name(config: str) -> dict:
    return {s["site"]: s for s in status_json(config)["sites"]}


def receipt_age(lab_: Lab, standby: str) -> float:
    """Seconds since the standby's WAL receiver last heard from the primary (0 when it has none)."""
    with lab_.connect(standby) as conn:
        row = conn.execute("SELECT EXTRACT(epoch FROM clock_timestamp() - last_msg_receipt_time)::float8 "
                           "FROM pg_stat_wal_receiver").fetchone()
    return row[0] if row and row[0] is not None else 0.0


def namespace_of(pid: int) -> str:
    return subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True, text=True).stdout.strip()


def primaries(lab_: Lab) -> list[str]:
    found = []
    for site in SITES:
        with lab_.connect(site) as conn:
            if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                found.append(site)
    return found


@needs_netns
def test_sites_on_their_own_addresses_streaming(netns_lab):
    config = str(netns_lab.spec.config_path)
    sites = sites_by_name(config)
    assert sites["rabat"]["role"] == "primary" and sites["backup"]["role"] == "standby"
    assert sites["backup"]["streaming"] is True
    info = netns_lab.status()
    for site, address in netns.SITE_ADDRESSES.items():
        assert info["sites"][site]["address"] == address and info["sites"][site]["postgres_listening"]
        assert f"{address}:{netns_lab.spec.pg_port(site)}" in sites[site]["postgres"]["address"]
        # The postmaster lives in the site's namespace, not in ours.
        assert namespace_of(info["sites"][site]["postgres_pid"]) == netns.namespace(site)
        routes = subprocess.run(["ip", "-n", netns.namespace(site), "route"], capture_output=True, text=True).stdout
        assert "default" not in routes
    # The standby streams from the primary's lab address.
    with netns_lab.connect("backup") as conn:
        assert conn.execute("SELECT sender_host FROM pg_stat_wal_receiver").fetchone()[0] == "198.18.1.1"


@needs_netns
def test_switchover_refused_while_the_replication_link_is_cut(netns_lab):
    config = str(netns_lab.spec.config_path)
    primary_port = netns_lab.spec.pg_port("rabat")
    with Writer(netns_lab.spec.app_dsn(), rate=100) as writer:
        writer.wait_for_commits(20)
        netfaults.cut_port("backup", primary_port)  # silent drops: the receiver just hears nothing
        try:
            wait_for(lambda: receipt_age(netns_lab, "backup") > 6, timeout=30, interval=0.5,
                     what="the cut-off receiver silent for longer than operation.max_receipt_age (5 s)")
            result = dcctl("--yes", "switchover", config=config, check=False)
            assert result.returncode == 5, result.stderr
            assert "standby backup: its WAL receiver last heard from the primary" in result.stderr
            assert primaries(netns_lab) == ["rabat"]
            writer.wait_for_commits(20)  # the primary kept serving the writer in the root namespace
        finally:
            netfaults.heal("backup")
        assert netfaults.rules("backup") == ""
    stats = writer.stats
    assert stats.acknowledged and missing_ids(netns_lab.spec.app_dsn(), stats.acknowledged) == []
    # Healed, the standby catches up with every acknowledged commit.
    last_id = stats.acknowledged[-1][0]

    def standby_has_last() -> bool:
        try:
            with psycopg.connect(host="198.18.2.1", port=netns_lab.spec.pg_port("backup"), dbname="massar",
                                 user="postgres", passfile=str(netns_lab.spec.pgpass), connect_timeout=2) as conn:
                return conn.execute("SELECT count(*) FROM dcctl_writer WHERE id = %s", (last_id,)).fetchone()[0] == 1
        except psycopg.Error:
            return False

    wait_for(standby_has_last, timeout=90, interval=0.5, what="the healed standby replaying the last commit")
    assert primaries(netns_lab) == ["rabat"]


@needs_netns
def test_switchover_round_trip_between_the_namespaces(netns_lab):
    config = str(netns_lab.spec.config_path)
    wait_for(lambda: sites_by_name(config)["backup"]["streaming"], timeout=60, what="backup streaming")
    with Writer(netns_lab.spec.app_dsn(), rate=100) as writer:
        for target in ("backup", "rabat"):
            writer.wait_for_commits(10)
            dcctl("--yes", "switchover", "--to", target, config=config)
            assert primaries(netns_lab) == [target]
        writer.wait_for_commits(10)
    assert missing_ids(netns_lab.spec.app_dsn(), writer.stats.acknowledged) == []
    # dcctl restarted both servers over ssh: they are still inside their own namespaces.
    for site in SITES:
        assert namespace_of(netns_lab.running(site)) == netns.namespace(site)


@needs_netns
def test_switchover_refused_while_ssh_to_the_standby_site_is_cut(netns_lab):
    """Only the transport is cut (`dcctl lab fault cut-port --port ssh:SITE`): PostgreSQL still
    streams, but dcctl cannot run a command at the standby site, so it must not start."""
    config, lab_dir = str(netns_lab.spec.config_path), netns_lab.spec.dir
    primary = primaries(netns_lab)[0]
    standby = next(s for s in SITES if s != primary)
    with Writer(netns_lab.spec.app_dsn(), rate=100) as writer:
        writer.wait_for_commits(20)
        dcctl("lab", "fault", "cut-port", "--dir", lab_dir, "--site", standby, "--port", f"ssh:{standby}")
        try:
            listed = dcctl("lab", "fault", "list", "--dir", lab_dir).stdout
            assert f"dport {netns_lab.spec.sshd_port(standby)} drop" in listed
            result = dcctl("--yes", "switchover", "--to", standby, config=config, check=False, timeout=180)
            assert result.returncode == 5, result.stderr
            assert f"site {standby} is unreachable" in result.stderr
            assert primaries(netns_lab) == [primary]
            writer.wait_for_commits(20)
        finally:
            dcctl("lab", "fault", "heal", "--dir", lab_dir)
        assert "no rules" in dcctl("lab", "fault", "list", "--dir", lab_dir).stdout
    assert missing_ids(netns_lab.spec.app_dsn(), writer.stats.acknowledged) == []
    assert sites_by_name(config)[standby]["streaming"] is True


@needs_netns
def test_freeze_and_thaw_from_the_command_line(netns_lab):
    lab_dir = netns_lab.spec.dir
    standby = next(s for s in SITES if s != primaries(netns_lab)[0])
    postmaster = netns_lab.running(standby)
    dcctl("lab", "fault", "freeze", "--dir", lab_dir, "--site", standby)
    try:
        assert Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"  # stopped
        assert f"frozen: {postmaster}" in dcctl("lab", "fault", "list", "--dir", lab_dir).stdout
    finally:
        dcctl("lab", "fault", "thaw", "--dir", lab_dir, "--site", standby)
    assert Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T"
    wait_for(lambda: sites_by_name(str(netns_lab.spec.config_path))[standby]["streaming"], timeout=60,
             what=f"{standby} streaming after the thaw")


def agent_config(lab_: Lab, site: str, isolation_fence_after: float | None) -> str:
    """The lab's config as the agent at `site` sees it on its own host: listening on the site's lab
    address (its peer's agent must reach it over the lab network), with a top-level state_dir of
    its own (on one machine the lab's sites share a file system: with the operator's state_dir the
    agent would read the failover's generation record through the disk, across the partition)."""
    def edit(data: dict) -> None:
        data["state_dir"] = str(lab_.spec.site_dir(site) / "agent-host-state")
        for name, settings in data["services"]["massar"]["sites"].items():
            settings["agent"]["listen"] = f"{netns.site_address(name)}:{lab_.spec.agent_port(name)}"
            if isolation_fence_after is not None:
                settings["agent"]["isolation_fence_after"] = isolation_fence_after

    return config_variant(lab_, f"agent-{site}-{isolation_fence_after}", edit)


@contextmanager
def agents_in_their_namespaces(lab_: Lab, isolation_fence_after: float | None):
    agents = [AgentProcess(agent_config(lab_, site, isolation_fence_after), site,
                           lab_.spec.root / f"agent-{site}.log", prefix=netns.exec_prefix(site))
              for site in SITES]
    try:
        yield [agent.start() for agent in agents]
    finally:
        for agent in agents:
            agent.stop()


@contextmanager
def application_writer(lab_: Lab, site: str):
    """A client in the application servers' namespace committing directly to `site`'s address;
    yields the file it appends each acknowledged commit to."""
    out = lab_.spec.root / f"app-writer-{time.monotonic_ns()}.txt"
    out.touch()
    dsn = (f"host={netns.site_address(site)} port={lab_.spec.pg_port(site)} dbname=massar user=massar_app "
           f"passfile={lab_.spec.pgpass} connect_timeout=2")
    proc = subprocess.Popen([*netns.exec_prefix(netns.APP_HOST), sys.executable, "-m", "dcctl.lab.writer",
                             "--dsn", dsn, "--out", str(out), "--rate", "200"], stdin=subprocess.DEVNULL)
    try:
        yield out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@needs_netns
@pytest.mark.parametrize("isolation_fence_after", [None, 3.0], ids=["watch-only", "isolation-fence-3s"])
def test_split_brain_the_old_primary_takes_no_write_once_the_partition_heals(netns_lab, isolation_fence_after):
    """The classic split brain: the clients still reach the old primary, its peer and the operator
    do not; the operator declares it down and fails over. Measured from the client's side: commits
    the old primary acknowledged alone, and any it acknowledged after the partition healed."""
    lab_ = netns_lab
    old = primaries(lab_)[0]
    new = next(s for s in SITES if s != old)
    config = str(lab_.spec.config_path)
    with agents_in_their_namespaces(lab_, isolation_fence_after), application_writer(lab_, old) as out:
        wait_for(lambda: len(read_acknowledged(str(out))) >= 50, timeout=30, what="the application committing")
        netfaults.isolate(old)
        isolated_at = time.time()
        try:
            failover = dcctl("--yes", "failover", "--to", new, "--primary-is-down", "--confirm-site", old,
                             config=config, timeout=180)
            promoted_at = time.time()
            if isolation_fence_after is not None:
                wait_for(lambda: lab_.running(old) is None, timeout=60, what="the isolated primary fencing itself")
            time.sleep(2)  # the partition outlives the failover by a while, as it would in a real one
        finally:
            netfaults.heal(old)
            healed_at = time.time()
        wait_for(lambda: lab_.running(old) is None, timeout=60, what="the old primary fenced after the heal")
        fenced_seen_at = time.time()
        time.sleep(1)  # the client keeps trying: a write accepted late would show here
    acknowledged = read_acknowledged(str(out))
    alone = [t for _, t in acknowledged if t > isolated_at]
    after_heal = [t for _, t in acknowledged if t > healed_at]
    print(f"\n[split brain, {isolation_fence_after or 'no'} isolation fence] commits acknowledged by the old "
          f"primary after the partition: {len(alone)} (last {max(alone, default=isolated_at) - isolated_at:.2f} s "
          f"after it; failover done {promoted_at - isolated_at:.2f} s after it); after the heal: {len(after_heal)} "
          f"(last {max(after_heal, default=healed_at) - healed_at:.3f} s after it; fence seen "
          f"{fenced_seen_at - healed_at:.2f} s after it)")
    report_line = next(line for line in failover.stderr.splitlines() if line.startswith("report: "))
    report = json.loads(Path(report_line.split(": ", 1)[1]).with_name("report.json").read_text())
    print("  failover steps (s):", ", ".join(f"{s['step']} {s.get('seconds') or 0:.2f}" for s in report.get("steps", [])))
    if isolation_fence_after is not None:
        assert after_heal == []  # fenced while still cut off: nothing at all after the heal
    assert acknowledged and all(t <= fenced_seen_at for t in after_heal)
    dcctl("--yes", "rejoin", "--site", old, config=str(lab_.spec.config_path), timeout=300)
    wait_for(lambda: sites_by_name(str(lab_.spec.config_path))[old]["streaming"], timeout=60,
             what=f"{old} streaming again")
    assert primaries(lab_) == [new]


@needs_netns
def test_lab_down_leaves_nothing_behind(netns_lab):
    assert lab_down(netns_lab.spec.dir)
    assert netns.leftovers(SITES) == []
    assert not any(ns.startswith("dcctl-") for ns in netns.namespaces())
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "dcctl-br0" not in links and "dcv-" not in links
    assert not Path(netns_lab.spec.dir).exists()


def test_a_netns_lab_is_refused_without_root(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(RefusedError, match="--isolation netns needs root"):
        Lab.up(tmp_path / "lab", transport="ssh", isolation="netns")
    assert not (tmp_path / "lab").exists()
