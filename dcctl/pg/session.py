"""psycopg connections the way dcctl wants them: named, time-bounded, autocommit,
and every connection failure mapped to one clear UnreachableError."""
from __future__ import annotations

import math
import select

import psycopg
from psycopg.rows import DictRow, dict_row

from dcctl.config.schema import PostgresConfig
from dcctl.errors import UnreachableError


def connect(node: PostgresConfig, purpose: str, site: str, *, dbname: str | None = None,
            user: str | None = None, port: int | None = None,
            statement_timeout: float | None = None) -> psycopg.Connection[DictRow]:
    """A connection to `node` (or to another server on its host: `port`, e.g. a drill's copy).
    statement_timeout: seconds, node.statement_timeout unless given; 0 sets no limit."""
    port = port or node.port
    seconds = node.statement_timeout if statement_timeout is None else statement_timeout
    try:
        return psycopg.connect(
            host=node.host, port=port, dbname=dbname or node.dbname, user=user or node.user,
            passfile=node.passfile or None,
            connect_timeout=max(2, math.ceil(node.connect_timeout)),
            application_name=f"dcctl {purpose}",
            options=f"-c statement_timeout={int(seconds * 1000)}",
            autocommit=True, row_factory=dict_row,
        )
    except psycopg.OperationalError as exc:
        cause = first_line(exc)
        if "timeout expired" in cause:
            cause += f" (connect_timeout {max(2, math.ceil(node.connect_timeout))} s)"
        raise UnreachableError(f"PostgreSQL at {node.host}:{port} (site {site}) is unreachable: "
                               f"{cause}") from None


def hung_up(conn: psycopg.Connection[DictRow]) -> bool:
    """An idle connection's socket is readable only when the server speaks unasked, which for a
    connection without LISTEN means it is ending it: checked without a round trip."""
    try:
        return bool(select.select([conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError, psycopg.Error):
        return True


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # libpq writes 'connection to server at "h", port p failed: <cause>' then an advice line.
    causes = [line.split("failed: ", 1)[1] for line in lines if "failed: " in line]
    if causes:
        return causes[-1]
    return lines[0] if lines else type(exc).__name__


def one_row(cursor: psycopg.Cursor[DictRow]) -> DictRow:
    """The row a single-row statement returns (SELECT of functions, never empty)."""
    row = cursor.fetchone()
    if row is None:
        raise UnreachableError("PostgreSQL returned no row where one was expected (the connection may have been "
                               "lost)")
    return row
