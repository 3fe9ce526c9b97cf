"""What the chaos run (bench/chaos.py) watches while it breaks things: each site's
`pg_is_in_recovery()` sampled every ~50 ms (to measure any moment with two writable primaries, and
to know where to write documents), and a file writer that puts documents into whichever site is
the primary, notes when each one has reached the other site, and can later tell which of those
are missing at both sites.

Both run in threads of the chaos process and talk to the lab directly (psycopg, the file system),
never through dcctl: they are the independent witnesses of what dcctl promises."""
from __future__ import annotations

import hashlib
import os
import pwd
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from dcctl.lab.lab import Lab
from dcctl.lab.layout import SITES

STORE = "documents"
SAMPLE_EVERY = 0.05
# Two writable answers of one site further apart than this are not taken to mean that the site
# was writable all the time in between (it may have been frozen, or demoted and promoted again).
CONTINUOUS_WITHIN = 0.25
FRESH_FOR = 0.3  # an answer older than this does not say who the primary is now


@dataclass(frozen=True)
class Answer:
    sent: float  # time.time() when the query was sent
    received: float
    writable: bool | None  # None: no answer (refused, broken, timed out)


class SiteSampler:
    """One site's `pg_is_in_recovery()`, asked every SAMPLE_EVERY seconds over one connection
    (reopened after any error). A frozen server holds the query: its answer, if any, comes later."""

    def __init__(self, lab: Lab, site: str):
        self.lab, self.site = lab, site
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"chaos-sampler-{site}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def latest(self) -> Answer | None:
        return self.answers[-1] if self.answers else None

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.lab.spec.pg_port(self.site), dbname="postgres",
                               user="postgres", passfile=str(self.lab.spec.pgpass), autocommit=True,
                               connect_timeout=1, application_name="chaos-sampler")

    def _run(self) -> None:
        conn = None
        while not self._stop.is_set():
            sent = time.time()
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = self._connect()
                    sent = time.time()
                in_recovery = conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()[0]
                self.answers.append(Answer(sent, time.time(), not in_recovery))
            except psycopg.Error:
                self.answers.append(Answer(sent, time.time(), None))
                if conn is not None:
                    conn.close()
                conn = None
            self._stop.wait(SAMPLE_EVERY)
        if conn is not None:
            conn.close()


def writable_spans(answers: list[Answer]) -> list[tuple[float, float]]:
    """Where a site was certainly writable: between two consecutive writable answers close enough
    in time (from the first answer's arrival to the second's sending).

    >>> a = [Answer(0.0, 0.01, True), Answer(0.05, 0.06, True), Answer(0.1, 0.11, False), Answer(0.15, 0.16, True)]
    >>> writable_spans(a)
    [(0.01, 0.05)]
    """
    spans = []
    for first, second in zip(answers, answers[1:]):
        if first.writable and second.writable and second.sent - first.received <= CONTINUOUS_WITHIN:
            spans.append((first.received, second.sent))
    return spans


def overlap_seconds(spans_a: list[tuple[float, float]], spans_b: list[tuple[float, float]]) -> float:
    """Total time covered by both lists of spans (each list sorted and not overlapping itself).

    >>> overlap_seconds([(0, 2), (5, 6)], [(1, 5.5)])
    1.5
    """
    total, i, j = 0.0, 0, 0
    while i < len(spans_a) and j < len(spans_b):
        start, end = max(spans_a[i][0], spans_b[j][0]), min(spans_a[i][1], spans_b[j][1])
        total += max(0.0, end - start)
        if spans_a[i][1] < spans_b[j][1]:
            i += 1
        else:
            j += 1
    return total


def answers_inside(answers: list[Answer], spans: list[tuple[float, float]]) -> list[Answer]:
    """The writable answers given while the other site was certainly writable (two primaries,
    caught by a single sample even when too short to show as overlapping spans)."""
    return [a for a in answers if a.writable and any(s <= a.sent and a.received <= e for s, e in spans)]


class RoleWatch:
    """Both sites sampled; says who is the primary now and measures two writable primaries."""

    def __init__(self, lab: Lab):
        self.samplers = {site: SiteSampler(lab, site) for site in SITES}

    def start(self) -> "RoleWatch":
        for sampler in self.samplers.values():
            sampler.start()
        return self

    def stop(self) -> None:
        for sampler in self.samplers.values():
            sampler.stop()

    def primary(self) -> str | None:
        """The only site whose fresh answer says writable, else None (a moment without one)."""
        now = time.time()
        writable = [site for site, sampler in self.samplers.items()
                    if (latest := sampler.latest()) and latest.writable and now - latest.received <= FRESH_FOR]
        return writable[0] if len(writable) == 1 else None

    def two_primaries(self) -> dict:
        rabat, backup = (list(self.samplers[site].answers) for site in SITES)
        spans_r, spans_b = writable_spans(rabat), writable_spans(backup)
        caught = answers_inside(rabat, spans_b) + answers_inside(backup, spans_r)
        return {"seconds": round(overlap_seconds(spans_r, spans_b), 4), "samples_caught": len(caught),
                "first_caught_at": min((a.received for a in caught), default=None),
                "samples": len(rabat) + len(backup)}


@dataclass
class Document:
    relative: str
    site: str  # where it was written (the primary then)
    digest: str
    written_at: float
    synced_at: float | None = None  # when it was first seen, identical, at the other site


class FileWriter:
    """Documents written as the lab user into the primary's store, one every `every` seconds, in
    a thread; `write_burst` adds some at once. A document is acknowledged as synced once it has
    been seen identical at the other site."""

    def __init__(self, lab: Lab, roles: RoleWatch, seed: int, every: float = 0.2):
        self.lab, self.roles, self.every = lab, roles, every
        self.rng = random.Random(seed)
        self.documents: list[Document] = []
        self.unplaced = 0  # moments with no single primary to write to
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos-files")
        user = pwd.getpwnam(lab.spec.user)
        self.uid, self.gid = user.pw_uid, user.pw_gid

    def store(self, site: str) -> Path:
        return self.lab.spec.store_dir(site, STORE)

    def start(self) -> "FileWriter":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            site = self.roles.primary()
            if site:
                self.write_one(site)
            else:
                self.unplaced += 1
            self.note_synced()
            self._stop.wait(self.every)

    def write_one(self, site: str) -> Document:
        with self._lock:
            number = len(self.documents) + 1
            content = b"chaos document %d\n" % number + self.rng.randbytes(self.rng.randint(512, 4096))
            relative = f"chaos/{number // 200:03d}/doc-{number:06d}.bin"
            self._make_dirs(site, Path(relative).parent)
            with open(self.store(site) / relative, "wb") as fh:
                fh.write(content)
                os.fchown(fh.fileno(), self.uid, self.gid)
            document = Document(relative, site, hashlib.sha256(content).hexdigest(), time.time())
            self.documents.append(document)
            return document

    def _make_dirs(self, site: str, relative: Path) -> None:
        current = self.store(site)
        for part in relative.parts:
            current = current / part
            if not current.exists():
                try:
                    current.mkdir()
                    os.chown(current, self.uid, self.gid)
                except FileExistsError:
                    pass  # the other site's agent made it meanwhile

    def write_burst(self, site: str, count: int) -> list[Document]:
        return [self.write_one(site) for _ in range(count)]

    def digest_at(self, site: str, relative: str) -> str | None:
        try:
            return hashlib.sha256((self.store(site) / relative).read_bytes()).hexdigest()
        except OSError:
            return None

    def note_synced(self, recent: float = 300.0) -> None:
        """Mark the documents now present, identical, at the other site (only recent ones are
        looked at: one written at a site that lost its role just then never gets there)."""
        now = time.time()
        with self._lock:
            pending = [d for d in self.documents if d.synced_at is None and now - d.written_at <= recent]
        for document in pending:
            other = next(s for s in SITES if s != document.site)
            if self.digest_at(other, document.relative) == document.digest:
                document.synced_at = time.time()

    def wait_synced(self, documents: list[Document], timeout: float) -> list[Document]:
        """Wait until these documents are at the other site; those that are not."""
        end = time.monotonic() + timeout
        while True:
            self.note_synced()
            waiting = [d for d in documents if d.synced_at is None]
            if not waiting or time.monotonic() > end:
                return waiting
            time.sleep(0.1)

    def lost(self) -> list[Document]:
        """Synced documents now missing (or changed) at both sites."""
        with self._lock:
            synced = [d for d in self.documents if d.synced_at is not None]
        return [d for d in synced if all(self.digest_at(site, d.relative) != d.digest for site in SITES)]

    def where_is(self, document: Document) -> list[str]:
        """Copies of a lost document elsewhere in the lab (holding areas, quarantine), for the report."""
        name = Path(document.relative).name
        found = []
        for site in SITES:
            for path in self.lab.spec.site_dir(site).rglob(name):
                found.append(str(path))
        return found

    def summary(self) -> dict:
        with self._lock:
            documents = list(self.documents)
        return {"written": len(documents), "synced": sum(1 for d in documents if d.synced_at is not None),
                "no_primary_to_write_to": self.unplaced}
