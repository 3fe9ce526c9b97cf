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

# The receiver says "streaming" as soon as it has connected, before START_REPLICATION succeeded;
# the sender's side says it only once WAL flows (primary_conninfo names the standby's site).
SENDING_TO = """
SELECT 1 FROM pg_catalog.pg_stat_replication WHERE application_name = %s AND state = 'streaming'
"""

CREATE_PHYSICAL_SLOT = """
SELECT pg_catalog.pg_create_physical_replication_slot(%s)
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = %s)
"""


# ---- the operations' steps (dcctl/ops/steps) ------------------------------------------------

CHECKPOINT = "CHECKPOINT"

IN_RECOVERY = """
SELECT pg_catalog.pg_is_in_recovery() AS in_recovery
"""

REPLAY_LSN = """
SELECT pg_catalog.pg_last_wal_replay_lsn()::text AS lsn
"""

PROMOTE = """
SELECT pg_catalog.pg_promote(false)
"""

# The timeline a primary writes on, read from the name of its current WAL file.
TIMELINE_AND_LSN = """
SELECT ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int
         AS tli,
       pg_catalog.pg_current_wal_lsn()::text AS lsn
"""

# The return slot, created on the standby before promotion and reserving WAL at once.
CREATE_PHYSICAL_SLOT_RESERVED = """
SELECT pg_catalog.pg_create_physical_replication_slot(%s, true)
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = %s)
"""

DROP_INACTIVE_SLOT = """
SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots
WHERE slot_name = %s AND NOT active
"""

READ_SERVER_FILE = """
SELECT pg_catalog.pg_read_file(%s) AS content
"""

CONNECTABLE_DATABASES = """
SELECT oid, datname FROM pg_catalog.pg_database WHERE datallowconn
"""

# An index or TOAST relation is reported as the table it belongs to.
RELATION_OWNERS = """
SELECT c.relfilenode AS relfilenode,
       coalesce(tn.nspname || '.' || t.relname, n.nspname || '.' || c.relname) AS name
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_catalog.pg_class t ON t.oid = coalesce(i.indrelid,
     (SELECT o.oid FROM pg_catalog.pg_class o WHERE o.reltoastrelid = c.oid))
LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
WHERE c.relfilenode = ANY(%s)
"""


# ---- replication init, check-prereqs, drills, the agent's watch -----------------------------

DATABASES_SIZE = """
SELECT pg_catalog.sum(pg_catalog.pg_database_size(oid))::bigint AS size FROM pg_catalog.pg_database
"""

REPLICATION_PREREQS = """
SELECT pg_catalog.current_setting('config_file') AS config_file,
       pg_catalog.current_setting('hba_file') AS hba_file,
       (SELECT pg_catalog.json_object_agg(name, setting) FROM pg_catalog.pg_settings
        WHERE name IN ('wal_level', 'wal_log_hints', 'data_checksums', 'hot_standby', 'max_wal_senders',
                       'max_replication_slots', 'wal_keep_size', 'archive_mode')) AS settings,
       (SELECT pg_catalog.json_build_object('replication', r.rolreplication, 'login', r.rolcanlogin)
        FROM pg_catalog.pg_roles r WHERE r.rolname = %s) AS replication_role,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
           'line', h.line_number, 'type', h.type, 'database', h.database, 'user_name', h.user_name,
           'address', h.address, 'netmask', h.netmask, 'auth_method', h.auth_method, 'error', h.error)
         ORDER BY h.line_number) FROM pg_catalog.pg_hba_file_rules h) AS hba_rules,
       (SELECT pg_catalog.sum(pg_catalog.pg_database_size(d.oid))::bigint FROM pg_catalog.pg_database d) AS size
"""

# The fixes check-prereqs tells the operator to run on the primary (shown, never run by dcctl).
FIX_CREATE_REPLICATION_ROLE = "CREATE ROLE {user} WITH REPLICATION LOGIN PASSWORD '...';"
FIX_ALTER_REPLICATION_ROLE = "ALTER ROLE {user} WITH REPLICATION LOGIN;"

# The timeline a node is on, as an expression: a primary's from its current WAL file name, a
# standby's from its last checkpoint.
TIMELINE = ("CASE WHEN pg_catalog.pg_is_in_recovery() "
            "THEN (SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()) "
            "ELSE ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))"
            "::bit(32)::int END")

# The agent's generation watch: one round trip each, several times a second (dcctl/agent/watcher.py).
WATCH_OWN_NODE = (f"SELECT pg_catalog.pg_is_in_recovery() AS in_recovery, {TIMELINE} AS timeline, "
                  "pg_catalog.current_setting('synchronous_standby_names') AS standby_names, "
                  "(SELECT pg_catalog.max(r.reply_time) FROM pg_catalog.pg_stat_replication r "
                  " WHERE r.application_name = %s AND r.state = 'streaming') AS peer_reply_at, "
                  "(SELECT pg_catalog.max(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - "
                  "a.query_start)) FROM pg_catalog.pg_stat_activity a WHERE a.wait_event = 'SyncRep') AS sync_wait, "
                  "pg_catalog.clock_timestamp() AS server_now")
WATCH_PEER_NODE = f"SELECT pg_catalog.pg_is_in_recovery() AS in_recovery, {TIMELINE} AS timeline"


def shown(statement: str, *params: str) -> str:
    """A statement on one line with its %s parameters as SQL literals, for plans and dry runs.

    >>> shown(CREATE_PHYSICAL_SLOT, "dcctl_backup", "dcctl_backup")[:69]
    "SELECT pg_catalog.pg_create_physical_replication_slot('dcctl_backup')"
    >>> shown("SELECT %s", "it's")
    "SELECT 'it''s'"
    """
    text = " ".join(statement.split())
    literals = tuple("'" + str(p).replace("'", "''") + "'" for p in params)
    return text % literals if literals else text

RELOAD_CONF = """
SELECT pg_catalog.pg_reload_conf()
"""


def set_synchronous_standby_names(value: str) -> str:
    """ALTER SYSTEM takes no bind parameters: the value is quoted here (standard_conforming_strings).

    >>> print(set_synchronous_standby_names('"backup"'))
    ALTER SYSTEM SET synchronous_standby_names = '"backup"'
    """
    from dcctl.pg.standby_conf import quote

    return f"ALTER SYSTEM SET synchronous_standby_names = {quote(value)}"

# --- PgBouncer's admin console (database "pgbouncer"; simple query protocol, no transactions) ---
PGBOUNCER_SHOW_DATABASES = "SHOW DATABASES"
PGBOUNCER_SHOW_POOLS = "SHOW POOLS"
PGBOUNCER_SHOW_CLIENTS = "SHOW CLIENTS"
PGBOUNCER_SHOW_SERVERS = "SHOW SERVERS"
PGBOUNCER_RELOAD = "RELOAD"


def pgbouncer_pause(database: str) -> str:
    """PAUSE one database: new transactions queue, and the command returns once the server
    connections in use are released (transactions in flight end) and closed."""
    return f"PAUSE {quote_pgbouncer_name(database)}"


def pgbouncer_resume(database: str) -> str:
    return f"RESUME {quote_pgbouncer_name(database)}"


def quote_pgbouncer_name(name: str) -> str:
    """A database name as the admin console reads it (its own parser: bare words, or double quotes).

    >>> quote_pgbouncer_name("massar"), quote_pgbouncer_name('we"ird')
    ('massar', '"we""ird"')
    """
    if name.replace("_", "").isalnum() and name.isascii() and not name[0].isdigit():
        return name
    return '"' + name.replace('"', '""') + '"'
