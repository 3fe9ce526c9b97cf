"""An application stand-in for tests, benchmarks and drills: commits sequential ids through the
lab's multi-host DSN (target_session_attrs=read-write), reconnects on any error, and records
every acknowledged commit, so that "zero lost commits" and "write unavailability" are measured
from the client's side, as users would feel them."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psycopg

TABLE_DDL = ("CREATE TABLE IF NOT EXISTS dcctl_writer (id bigint PRIMARY KEY, "
             "at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp())")


@dataclass
class WriterStats:
    acknowledged: list[tuple[int, float]] = field(default_factory=list)  # (id, time acknowledged)
    errors: int = 0
    commit_latencies: list[float] = field(default_factory=list)

    def longest_gap(self, start: float | None = None, end: float | None = None) -> float:
        """Longest time between two consecutive acknowledged commits (within [start, end])."""
        times = [t for _, t in self.acknowledged if (start is None or t >= start) and (end is None or t <= end)]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)

    def gap_around(self, moment: float) -> float:
        """The gap between the last commit before `moment` and the first after it."""
        before = [t for _, t in self.acknowledged if t <= moment]
        after = [t for _, t in self.acknowledged if t > moment]
        if not before or not after:
            return float("nan")
        return after[0] - before[-1]


def wait_for_more(acknowledged: list, count: int, timeout: float, who: str) -> None:
    """Block until `acknowledged`, which a writer's threads append to, has grown by `count`."""
    target = len(acknowledged) + count
    end = time.monotonic() + timeout
    while len(acknowledged) < target:
        if time.monotonic() > end:
            raise TimeoutError(f"{who} committed nothing for {timeout} s")
        time.sleep(0.01)


class Writer:
    def __init__(self, dsn: str, rate: float = 200.0, connect_timeout: int = 2, retry_delay: float = 0.002,
                 through_pooler: bool = False):
        """retry_delay: the pause after an error before reconnecting. Tests keep it short; the
        benchmarks use what applications do (tens of ms), so figures are what users see.
        through_pooler: the DSN is a PgBouncer in transaction pooling, which (1.18) cannot keep the
        statements psycopg prepares after a few runs: none are prepared."""
        self.dsn = dsn
        self.prepare_threshold = None if through_pooler else 5  # 5: psycopg's default
        self.retry_delay = retry_delay
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.connect_timeout = connect_timeout
        self.stats = WriterStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="dcctl-writer")
        self._next_id = 1

    def __enter__(self) -> "Writer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        with psycopg.connect(self.dsn, connect_timeout=self.connect_timeout, autocommit=True) as conn:
            conn.execute(TABLE_DDL)
            self._next_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM dcctl_writer").fetchone()[0]
        self._thread.start()

    def stop(self) -> WriterStats:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.stats

    def wait_for_commits(self, count: int, timeout: float = 30.0) -> None:
        """Block until `count` more commits are acknowledged (the writer got through)."""
        wait_for_more(self.stats.acknowledged, count, timeout, "the writer")

    def _run(self) -> None:
        conn = None
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = psycopg.connect(self.dsn, connect_timeout=self.connect_timeout, autocommit=True,
                                           prepare_threshold=self.prepare_threshold)
                sent = time.monotonic()
                conn.execute("INSERT INTO dcctl_writer (id) VALUES (%s)", (self._next_id,))
                acked = time.time()
                self.stats.commit_latencies.append(time.monotonic() - sent)
                self.stats.acknowledged.append((self._next_id, acked))
                self._next_id += 1
            except psycopg.Error:
                self.stats.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(self.retry_delay)
                continue
            next_at += self.interval
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                next_at = time.monotonic()
        if conn is not None:
            conn.close()


def missing_ids(dsn: str, acknowledged: list[tuple[int, float]]) -> list[int]:
    """Acknowledged ids that the current primary does not have: lost commits."""
    ids = [i for i, _ in acknowledged]
    with psycopg.connect(dsn, connect_timeout=5, autocommit=True) as conn:
        present = {row[0] for row in conn.execute("SELECT id FROM dcctl_writer WHERE id = ANY(%s)", (ids,))}
    return [i for i in ids if i not in present]


def main(argv: list[str] | None = None) -> None:
    """`python -m dcctl.lab.writer --dsn DSN --out FILE`: the writer as a process of its own, for a
    client that must run elsewhere than the tests (e.g. `ip netns exec dcctl-app ...`). Each
    acknowledged commit is appended to FILE as "id unix_time" the moment it is acknowledged; it
    runs until SIGTERM."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m dcctl.lab.writer")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--retry-delay", type=float, default=0.03)
    args = parser.parse_args(argv)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with open(args.out, "a", buffering=1) as out:
        writer = _AppendingWriter(args.dsn, out, rate=args.rate, retry_delay=args.retry_delay)
        writer.start()
        stopped.wait()
        writer.stop()


class _AppendingWriter(Writer):
    def __init__(self, dsn: str, out, **kwargs) -> None:
        super().__init__(dsn, **kwargs)
        self.stats.acknowledged = _Appending(out)


class _Appending(list):
    def __init__(self, out) -> None:
        super().__init__()
        self.out = out

    def append(self, item) -> None:
        super().append(item)
        self.out.write(f"{item[0]} {item[1]:.6f}\n")


def read_acknowledged(path: str) -> list[tuple[int, float]]:
    """What a `python -m dcctl.lab.writer` process recorded (a torn last line is left out)."""
    found = []
    with open(path) as lines:
        for line in lines:
            parts = line.split()
            if len(parts) == 2 and line.endswith("\n"):
                found.append((int(parts[0]), float(parts[1])))
    return found


if __name__ == "__main__":
    main()
