"""Partitions on a lab whose sites are hosts: `lab up --isolation netns` puts each site in its own
network namespace (198.18.1.1 rabat, 198.18.2.1 backup); the tests and dcctl run in the root
namespace, the operator's side. Root only."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from dcctl.errors import RefusedError
from dcctl.lab import netfaults, netns
from dcctl.lab.lab import Lab, lab_down
from dcctl.lab.layout import SITES
from dcctl.lab.writer import Writer, missing_ids
from tests.integration.conftest import dcctl, status_json, wait_for


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
