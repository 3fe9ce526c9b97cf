"""Every SQL statement dcctl runs, named, pg_catalog-qualified."""

NODE_STATUS = """
SELECT
  pg_catalog.pg_is_in_recovery() AS in_recovery,
  CASE WHEN NOT pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_current_wal_lsn()::text END AS current_lsn,
  pg_catalog.pg_last_wal_receive_lsn()::text AS receive_lsn,
  pg_catalog.pg_last_wal_replay_lsn()::text AS replay_lsn,
  pg_catalog.pg_last_xact_replay_timestamp() AS last_replay_at,
  CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_is_wal_replay_paused() ELSE false END
    AS replay_paused,
  pg_catalog.clock_timestamp() AS server_now,
  CASE WHEN NOT pg_catalog.pg_is_in_recovery()
    THEN ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int
  END AS primary_timeline,
  (SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()) AS checkpoint_timeline,
  r.status AS receiver_status,
  r.received_tli AS received_timeline,
  r.slot_name AS receiver_slot,
  EXTRACT(epoch FROM pg_catalog.clock_timestamp() - r.last_msg_receipt_time)::float8 AS receipt_age,
  CASE WHEN r.sender_host IS NOT NULL THEN r.sender_host || ':' || r.sender_port END AS upstream,
  pg_catalog.current_setting('server_version_num')::int AS server_version,
  (SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
      'name', s.slot_name, 'active', s.active, 'restart_lsn', s.restart_lsn::text, 'wal_status', s.wal_status,
      'retained_bytes', CASE WHEN NOT pg_catalog.pg_is_in_recovery() AND s.restart_lsn IS NOT NULL
          THEN pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn) END))
   FROM pg_catalog.pg_replication_slots s WHERE s.slot_type = 'physical') AS slots,
  (SELECT pg_catalog.json_object_agg(name, setting) FROM pg_catalog.pg_settings
   WHERE name IN ('wal_level', 'wal_log_hints', 'data_checksums', 'hot_standby', 'max_wal_senders',
                  'max_replication_slots', 'full_page_writes', 'primary_slot_name', 'wal_keep_size',
                  'archive_mode', 'wal_receiver_timeout')) AS settings
FROM (SELECT 1) AS one
LEFT JOIN pg_catalog.pg_stat_wal_receiver r ON true
"""

# Any transaction that takes an XID writes a commit record, which the walsender streams once it
# is flushed (at once, or by the WAL writer within wal_writer_delay: this commit wrote nothing else).
STREAM_NUDGE = """
SELECT pg_catalog.txid_current()
"""

SERVER_NOW = """
SELECT pg_catalog.clock_timestamp() AS now
"""

RECEIVER_HEARD_SINCE = """
SELECT r.last_msg_receipt_time >= %s AS heard FROM pg_catalog.pg_stat_wal_receiver r
"""

REPLICATION_STREAMING = """
SELECT status FROM pg_catalog.pg_stat_wal_receiver
"""

CREATE_PHYSICAL_SLOT = """
SELECT pg_catalog.pg_create_physical_replication_slot(%s)
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = %s)
"""
