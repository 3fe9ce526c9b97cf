"""psycopg connections the way dcctl wants them: named, time-bounded, autocommit,
and every connection failure mapped to one clear UnreachableError."""
from __future__ import annotations

import math

import psycopg
from psycopg.rows import dict_row

from dcctl.config.schema import PostgresConfig
from dcctl.errors import UnreachableError


def connect(node: PostgresConfig, purpose: str, site: str, *, dbname: str | None = None,
            user: str | None = None) -> psycopg.Connection:
    try:
        return psycopg.connect(
            host=node.host, port=node.port, dbname=dbname or node.dbname, user=user or node.user,
            passfile=node.passfile or None,
            connect_timeout=max(2, math.ceil(node.connect_timeout)),
            application_name=f"dcctl {purpose}",
            options=f"-c statement_timeout={int(node.statement_timeout * 1000)}",
            autocommit=True, row_factory=dict_row,
        )
    except psycopg.OperationalError as exc:
        cause = first_line(exc)
        if "timeout expired" in cause:
            cause += f" (connect_timeout {max(2, math.ceil(node.connect_timeout))} s)"
        raise UnreachableError(f"PostgreSQL at {node.host}:{node.port} (site {site}) is unreachable: "
                               f"{cause}") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # libpq writes 'connection to server at "h", port p failed: <cause>' then an advice line.
    causes = [line.split("failed: ", 1)[1] for line in lines if "failed: " in line]
    if causes:
        return causes[-1]
    return lines[0] if lines else type(exc).__name__
