"""Hand-built ServiceView snapshots for the pure checks and plans (no server involved)."""
from datetime import datetime, timedelta, timezone

from dcctl.model import DiskUsage, NodeStatus, ServiceView, SiteStatus, SlotStatus

NOW = datetime(2026, 11, 24, 5, 0, tzinfo=timezone.utc)
READY = {"wal_level": "replica", "wal_log_hints": "on", "data_checksums": "on", "hot_standby": "on",
         "max_wal_senders": "10", "max_replication_slots": "10", "primary_slot_name": ""}


def primary(lsn="0/5000000", slots=(SlotStatus("dcctl_backup", True, "0/5000000", 0, "reserved"),), timeline=1,
            offset=0.0, **settings):
    return NodeStatus(in_recovery=False, timeline=timeline, current_lsn=lsn, receive_lsn=None, replay_lsn=None,
                      last_replay_at=None, replay_paused=False, server_now=NOW, receiver_status=None,
                      receiver_slot=None, upstream=None, server_version=150018, slots=tuple(slots),
                      settings={**READY, **settings}, clock_offset=offset)


def standby(replay="0/5000000", receiver="streaming", behind_seconds=0.0, timeline=1, paused=False, offset=0.0,
            **settings):
    return NodeStatus(in_recovery=True, timeline=timeline, current_lsn=None, receive_lsn=replay, replay_lsn=replay,
                      last_replay_at=NOW - timedelta(seconds=behind_seconds), replay_paused=paused, server_now=NOW,
                      receiver_status=receiver, receiver_slot="dcctl_backup" if receiver else None,
                      upstream="10.0.0.1:5432" if receiver else None, server_version=150018, slots=(),
                      settings={**READY, "primary_slot_name": "dcctl_backup", **settings}, clock_offset=offset)


def site(name, node, reachable=True, error=None, disks=()):
    return SiteStatus(site=name, transport="local", reachable=reachable,
                      transport_error=None if reachable else "cannot connect to postgres@10.0.0.2:22: connection "
                                                             "refused",
                      postgres=f"10.0.0.{1 if name == 'rabat' else 2}:5432", node=node,
                      postgres_error=error if node is None else None, disks=tuple(disks))


def view(rabat, backup):
    return ServiceView("massar", (rabat, backup), NOW)


def healthy():
    disks = (DiskUsage("data", "/pg", 1000, 500), DiskUsage("wal", "/pg/pg_wal", 1000, 500))
    return view(site("rabat", primary(), disks=disks), site("backup", standby(), disks=disks))
