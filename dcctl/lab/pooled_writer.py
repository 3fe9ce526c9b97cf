"""An application behind PgBouncer, for the pooler tests and `bench/switchover.py --through-pooler`:
a few connections committing short transactions at a steady total rate, plus one long-lived
session that commits a two-row transaction periodically. Every error a client sees is counted
(a switchover through a paused pooler must show none), every acknowledged id is recorded (none
may be lost), and every commit's latency is kept with the time it was sent."""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

import psycopg

from dcctl.lab.writer import TABLE_DDL, wait_for_more


@dataclass
class PooledStats:
    acknowledged: list[tuple[int, float]] = field(default_factory=list)  # (id, time acknowledged)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (time sent, seconds to commit)
    errors: list[str] = field(default_factory=list)

    def longest_commit(self, start: float = 0.0, end: float = float("inf")) -> float:
        return max((lat for sent, lat in self.latencies if start <= sent <= end), default=0.0)

    def p99(self, start: float = 0.0, end: float = float("inf")) -> float:
        values = sorted(lat for sent, lat in self.latencies if start <= sent <= end)
        return values[min(len(values) - 1, int(0.99 * len(values)))] if values else 0.0


class PooledWriter:
    def __init__(self, dsn: str | list[str], rate: float = 200.0, connections: int = 4, session_every: float = 0.2):
        """dsn: one DSN, or several (e.g. one pooler per site) that the connections take in turn."""
        self.dsns = [dsn] if isinstance(dsn, str) else list(dsn)
        self.rate = rate
        self.connections = connections
        self.session_every = session_every
        self.stats = PooledStats()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def connect(self, index: int = 0) -> psycopg.Connection:
        # PgBouncer 1.18 in transaction pooling keeps no prepared statement between transactions:
        # psycopg must never prepare one.
        return psycopg.connect(self.dsns[index % len(self.dsns)], autocommit=True, prepare_threshold=None)

    def __enter__(self) -> "PooledWriter":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        with self.connect() as conn:
            conn.execute(TABLE_DDL)
            row = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM dcctl_writer").fetchone()
            first = row[0] if row else 1
        self._ids = itertools.count(first)
        interval = self.connections / self.rate
        self._threads = [threading.Thread(target=self._loop, args=(i, interval, self._one_short), daemon=True,
                                          name=f"pooled-writer-{i}") for i in range(self.connections)]
        self._threads.append(threading.Thread(target=self._loop, args=(0, self.session_every, self._one_session),
                                              daemon=True, name="pooled-session"))
        for thread in self._threads:
            thread.start()

    def stop(self) -> PooledStats:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        return self.stats

    def wait_for_commits(self, count: int, timeout: float = 30.0) -> None:
        wait_for_more(self.stats.acknowledged, count, timeout, "the pooled writer")

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def _record(self, ids: list[int], sent: float, sent_wall: float) -> None:
        acked = time.time()
        with self._lock:
            self.stats.acknowledged.extend((i, acked) for i in ids)
            self.stats.latencies.append((sent_wall, time.monotonic() - sent))

    def _error(self, exc: BaseException) -> None:
        with self._lock:
            self.stats.errors.append(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")

    def _loop(self, index: int, interval: float, once) -> None:
        conn = None
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = self.connect(index)
                once(conn)
            except psycopg.Error as exc:
                self._error(exc)
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                next_at = time.monotonic()
        if conn is not None:
            conn.close()

    def _one_short(self, conn: psycopg.Connection) -> None:
        ident = self._next_id()
        sent, sent_wall = time.monotonic(), time.time()
        conn.execute("INSERT INTO dcctl_writer (id) VALUES (%s)", (ident,))
        self._record([ident], sent, sent_wall)

    def _one_session(self, conn: psycopg.Connection) -> None:
        """A two-statement transaction on the same long-lived session."""
        ids = [self._next_id(), self._next_id()]
        sent, sent_wall = time.monotonic(), time.time()
        with conn.transaction():
            conn.execute("INSERT INTO dcctl_writer (id) VALUES (%s)", (ids[0],))
            conn.execute("INSERT INTO dcctl_writer (id) VALUES (%s)", (ids[1],))
        self._record(ids, sent, sent_wall)
