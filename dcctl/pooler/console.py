"""PgBouncer's admin console: PAUSE, RESUME, RELOAD and SHOW, reached directly with psycopg.

The console speaks the simple query protocol only and knows no transactions: sessions are
autocommit, statements go without parameters (psycopg then sends them as simple queries) and are
never prepared, and no `options` startup parameter is sent (PgBouncer refuses the ones it does
not know).
"""
from __future__ import annotations

import math
import threading
from typing import Any

import psycopg
from psycopg.rows import dict_row

from dcctl.config.schema import PoolerConfig
from dcctl.errors import UnreachableError
from dcctl.pg import queries
from dcctl.pg.session import first_line


class ConsoleError(UnreachableError):
    """The admin console could not be reached or refused a command."""


class AdminConsole:
    def __init__(self, pooler: PoolerConfig, purpose: str = "pooler"):
        self.pooler = pooler
        self.purpose = purpose
        self._conn: psycopg.Connection[Any] | None = None
        self._pending: list[psycopg.Connection[Any]] = []  # sessions of PAUSEs that missed their deadline
        self._spare: psycopg.Connection[Any] | None = None  # a session opened ahead for the next PAUSE

    @property
    def where(self) -> str:
        return f"pooler {self.pooler.name} ({self.pooler.host}:{self.pooler.port})"

    def __enter__(self) -> "AdminConsole":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(host=self.pooler.host, port=self.pooler.port, dbname="pgbouncer",
                                   user=self.pooler.user, passfile=self.pooler.passfile or None,
                                   connect_timeout=max(2, math.ceil(self.pooler.connect_timeout)),
                                   application_name=f"dcctl {self.purpose}", autocommit=True, row_factory=dict_row,
                                   prepare_threshold=None)  # psycopg would prepare a repeated SHOW: no console verb
        except psycopg.Error as exc:
            raise ConsoleError(f"the admin console of {self.where} is unreachable: {first_line(exc)}") from None

    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self.open()
        return self._conn

    def ready(self) -> None:
        """Open ahead both sessions a PAUSE needs, so that pausing several poolers takes no login."""
        self.conn()
        if self._spare is None or self._spare.closed or self._spare.broken:
            self._spare = self.open()

    def close(self) -> None:
        self._release_pending()
        if self._spare is not None:
            self._spare.close()
            self._spare = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def show(self, statement: str) -> list[dict[str, Any]]:
        try:
            return list(self.conn().execute(statement).fetchall())
        except psycopg.Error as exc:
            raise ConsoleError(f"{statement} on {self.where} failed: {first_line(exc)}") from None

    def command(self, statement: str) -> None:
        try:
            self.conn().execute(statement)
        except psycopg.Error as exc:
            raise ConsoleError(f"{statement} on {self.where} failed: {first_line(exc)}") from None

    def databases(self) -> list[dict[str, Any]]:
        return self.show(queries.PGBOUNCER_SHOW_DATABASES)

    def pools(self) -> list[dict[str, Any]]:
        return self.show(queries.PGBOUNCER_SHOW_POOLS)

    def clients(self) -> list[dict[str, Any]]:
        return self.show(queries.PGBOUNCER_SHOW_CLIENTS)

    def servers(self) -> list[dict[str, Any]]:
        return self.show(queries.PGBOUNCER_SHOW_SERVERS)

    def reload(self) -> None:
        self.command(queries.PGBOUNCER_RELOAD)

    def resume(self, database: str) -> None:
        self.command(queries.pgbouncer_resume(database))
        self._release_pending()

    def _release_pending(self) -> None:
        """Close the sessions of PAUSEs that missed their deadline. Only after RESUME: PgBouncer 1.18
        never answers a PAUSE that RESUME cancelled, and closing the session (from this thread) is
        what ends the wait of the thread that sent it."""
        while self._pending:
            self._pending.pop().close()

    def pause(self, database: str, timeout: float) -> bool:
        """PAUSE `database`, waiting at most `timeout` s for it to complete; False if it did not.

        PAUSE does not return before the transactions in flight end, and the console has no
        statement timeout: it runs on a session of its own in a thread. One still waiting at the
        deadline leaves the database paused (SHOW DATABASES says so at once): the caller RESUMEs
        on this console, which then closes that session."""
        outcome: dict[str, BaseException | None] = {}
        waiting, self._spare = self._spare, None
        if waiting is None or waiting.closed or waiting.broken:
            waiting = self.open()

        def run() -> None:
            try:
                waiting.execute(queries.pgbouncer_pause(database))
                outcome["error"] = None
            except BaseException as exc:  # reported to the caller below
                outcome["error"] = exc

        worker = threading.Thread(target=run, daemon=True, name=f"dcctl-pause-{self.pooler.name}")
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            self._pending.append(waiting)
            return False
        waiting.close()
        error = outcome.get("error")
        if error is not None:
            raise ConsoleError(f"PAUSE {database} on {self.where} failed: {first_line(error)}")
        return True
