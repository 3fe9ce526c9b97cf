"""A hung WAL receiver on the standby (SIGSTOP) and a switchover (reliability item 11).

Before the fix, preflight let the switchover start, and the old primary's fast shutdown waited
for its walsender, which waits up to wal_sender_timeout for the standby to confirm the shutdown
checkpoint; after a stop deadline the rollback found the old primary still stopping and left it
to go down. Now preflight refuses a receiver that has not heard from the primary within
operation.max_receipt_age, and a stop that overruns stop_deadline ends the walsenders and
restarts the old primary as primary at once.
"""
import json
import os
import signal

import pytest

from dcctl.lab.writer import Writer, missing_ids
from tests.integration.conftest import app_connect, config_variant, dcctl, local_lab, status_json, wait_for  # noqa: F401

pytestmark = pytest.mark.lab


def roles(config: str) -> dict:
    return {s["site"]: (s["role"], s["streaming"]) for s in status_json(config)["sites"]}


def primary_and_standby(lab_) -> tuple[str, str]:
    current = roles(str(lab_.spec.config_path))
    primary = next(site for site, (role, _) in current.items() if role == "primary")
    return primary, next(site for site in current if site != primary)


def receiver(lab_, standby: str) -> tuple[int, float]:
    """(pid, seconds since it last heard from the primary) of the standby's WAL receiver."""
    with app_connect(lab_, standby, dbname="postgres") as conn:
        row = conn.execute("SELECT pid, EXTRACT(epoch FROM clock_timestamp() - last_msg_receipt_time)::float8 "
                           "FROM pg_stat_wal_receiver WHERE status = 'streaming'").fetchone()
    return (row[0], row[1]) if row else (None, None)


class Frozen:
    """The standby's WAL receiver stopped with SIGSTOP (as a hung process is), thawed on exit."""

    def __init__(self, lab_, standby: str):
        self.pid = wait_for(lambda: receiver(lab_, standby)[0], what=f"{standby}'s WAL receiver")

    def __enter__(self):
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc):
        os.kill(self.pid, signal.SIGCONT)


def assert_streaming_pair(lab_, primary: str, standby: str) -> None:
    wait_for(lambda: roles(str(lab_.spec.config_path)) == {primary: ("primary", None), standby: ("standby", True)},
             timeout=90, what=f"{primary} primary and {standby} streaming")


def test_a_quiet_but_live_standby_is_not_refused(local_lab):
    # An idle primary sends nothing until the receiver pings it (wal_receiver_timeout / 2 = 30 s):
    # a healthy receiver can have heard nothing for far longer than max_receipt_age.
    primary, standby = primary_and_standby(local_lab)
    wait_for(lambda: (receiver(local_lab, standby)[1] or 0) > 8, timeout=60, interval=0.5,
             what="an idle receiver silent for longer than operation.max_receipt_age")
    there = json.loads(dcctl("--yes", "-o", "json", "switchover", config=str(local_lab.spec.config_path)).stdout)
    assert there["outcome"] == "success"
    assert_streaming_pair(local_lab, standby, primary)
    dcctl("--yes", "switchover", config=str(local_lab.spec.config_path))
    assert_streaming_pair(local_lab, primary, standby)


def test_preflight_refuses_a_hung_receiver(local_lab):
    config = str(local_lab.spec.config_path)
    primary, standby = primary_and_standby(local_lab)
    with Frozen(local_lab, standby):
        wait_for(lambda: receiver(local_lab, standby)[1] > 6, timeout=60, interval=0.5,
                 what="the frozen receiver silent for longer than operation.max_receipt_age (5 s)")
        result = dcctl("--yes", "switchover", config=config, check=False)
        assert result.returncode == 5, result.stderr
        assert f"standby {standby}: its WAL receiver last heard from the primary" in result.stderr
        assert "operation.max_receipt_age is 5 s" in result.stderr and "Traceback" not in result.stderr
        assert roles(config)[primary][0] == "primary"
    assert_streaming_pair(local_lab, primary, standby)


def test_a_receiver_hung_inside_the_window_rolls_back_at_the_stop_deadline(local_lab):
    # The preflight rule off: the receiver hangs as if right after preflight.
    def edit(data):
        data["services"]["massar"]["operation"] = {"max_receipt_age": 0, "stop_deadline": 3}

    config = config_variant(local_lab, "hung-receiver", edit)
    primary, standby = primary_and_standby(local_lab)
    with Writer(local_lab.spec.app_dsn(), rate=100) as writer:
        writer.wait_for_commits(10)
        with Frozen(local_lab, standby):
            result = dcctl("--yes", "-o", "json", "switchover", config=config, check=False)
            assert result.returncode == 1, result.stderr
            assert "'stop_primary' failed" in result.stderr and "undo stop_primary" in result.stderr
            # Rolled back means the old primary accepts writes again now, not after wal_sender_timeout.
            assert roles(config)[primary][0] == "primary"
            with app_connect(local_lab, primary) as conn:
                assert conn.execute("SELECT NOT pg_catalog.pg_is_in_recovery()").fetchone()[0]
            writer.wait_for_commits(10)
        assert_streaming_pair(local_lab, primary, standby)
        writer.wait_for_commits(10)
    assert missing_ids(local_lab.spec.app_dsn(), writer.stats.acknowledged) == []
    history = json.loads(dcctl("history", "-o", "json", config=config).stdout)
    assert history[0]["outcome"] == "rolled_back"
