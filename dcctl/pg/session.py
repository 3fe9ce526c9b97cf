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
        raise UnreachableError(f"PostgreSQL at {node.host}:{node.port} (site {site}) is unreachable: "
                               f"{first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # libpq prefixes each attempt with "connection to server at ... failed:"; keep the cause.
    cause = lines[-1] if lines else type(exc).__name__
    return cause.split("failed: ", 1)[-1]
