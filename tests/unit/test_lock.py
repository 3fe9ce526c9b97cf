"""The operation lock: the pure verdict, the exclusive create, and races between threads.

The "sites" here are directories reached through the real local transport (flock(1) and
all), so these tests need no lab; the lab tests run the same races across processes and ssh.
"""
import json
import os
import socket
import subprocess
import threading

import pytest

from dcctl.errors import RefusedError
from dcctl.ops.journal import Journal
from dcctl.ops.lock import OURS, REFUSE, RELEASE, TAKE_OVER, LockOwner, ServiceLock, judge, parse_owner
from dcctl.transport.local import LocalTransport

HERE = socket.gethostname()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def owner(op: str, pid: int | None = None, host: str = HERE, started: float = 1.0) -> LockOwner:
    return LockOwner(op, host, os.getpid() if pid is None else pid, started)


# -- the verdict --------------------------------------------------------------------------------

def test_verdicts():
    me = owner("op-switchover-1")
    dead = dead_pid()
    assert judge(me, me, finished=False, break_lock=False) == OURS
    assert judge(me, owner("op-switchover-0", dead), finished=True, break_lock=False) == RELEASE
    assert judge(me, owner("op-switchover-0"), finished=True, break_lock=False) == RELEASE
    assert judge(me, owner("op-switchover-0"), finished=False, break_lock=True) == REFUSE  # alive here
    assert judge(me, owner("op-switchover-1", started=2.0), finished=False, break_lock=False) == REFUSE  # 2 resumers
    assert judge(me, owner("op-switchover-1", dead), finished=False, break_lock=False) == TAKE_OVER  # resume
    assert judge(me, owner("op-switchover-0", dead), finished=False, break_lock=False) == REFUSE
    assert judge(me, owner("op-switchover-0", dead), finished=False, break_lock=True) == TAKE_OVER
    assert judge(me, owner("op-switchover-0", host="elsewhere"), finished=False, break_lock=False) == REFUSE
    assert judge(me, owner("op-switchover-0", host="elsewhere"), finished=False, break_lock=True) == TAKE_OVER
    drill = owner("op-drill-2")
    assert judge(drill, owner("op-drill-1", dead), finished=False, break_lock=False) == TAKE_OVER
    assert judge(drill, owner("op-switchover-1", dead), finished=False, break_lock=False) == REFUSE


def test_an_unreadable_lock_file_is_never_guessed_stale():
    holder = parse_owner("{not json")
    assert holder.operation == "unreadable lock file"
    assert judge(owner("op-x"), holder, finished=False, break_lock=False) == REFUSE


# -- the exclusive create -----------------------------------------------------------------------

def test_create_exclusive_creates_once_and_whole(tmp_path):
    transport = LocalTransport("here")
    path = str(tmp_path / "x.lock")
    assert transport.create_exclusive(path, b"first", mode=0o640)
    assert not transport.create_exclusive(path, b"second")
    assert open(path, "rb").read() == b"first"
    assert oct(os.stat(path).st_mode & 0o777) == "0o640"
    assert os.listdir(tmp_path) == ["x.lock"]  # no temporary file left behind


def test_create_exclusive_in_threads_has_one_winner(tmp_path):
    transport = LocalTransport("here")
    for attempt in range(30):
        path = str(tmp_path / f"{attempt}.lock")
        wins = race(lambda i: transport.create_exclusive(path, f"{i}".encode()))
        assert sorted(wins) == [False, True]


# -- the service lock ---------------------------------------------------------------------------

def make_lock(tmp_path, sites=("rabat", "backup")) -> ServiceLock:
    transport = LocalTransport("here")
    return ServiceLock(str(tmp_path / "state"), "massar",
                       {site: (transport, str(tmp_path / site)) for site in sites})


def lock_files(tmp_path) -> list[str]:
    found = []
    for directory in (tmp_path / "state" / "locks", tmp_path / "rabat", tmp_path / "backup"):
        if directory.exists():
            found += [str(p.relative_to(tmp_path)) for p in directory.iterdir()]
    return sorted(found)


def test_acquire_everywhere_then_release(tmp_path):
    lock = make_lock(tmp_path)
    me = owner("op-switchover-1")
    lock.acquire(me)
    assert lock.held_at == ["backup", "rabat"]  # sorted: every acquirer meets the same first site
    assert lock_files(tmp_path) == ["backup/massar.lock", "rabat/massar.lock", "state/locks/massar.lock"]
    assert json.loads((tmp_path / "rabat" / "massar.lock").read_text())["operation"] == "op-switchover-1"
    lock.release(me)
    assert lock_files(tmp_path) == []


def test_a_refusal_gives_back_what_it_took(tmp_path):
    holder = owner("op-switchover-0", host="elsewhere")
    (tmp_path / "rabat").mkdir()
    (tmp_path / "rabat" / "massar.lock").write_text(holder.to_json())  # held at the second site only
    with pytest.raises(RefusedError, match="locked by operation op-switchover-0 .*host elsewhere.* at rabat"):
        make_lock(tmp_path).acquire(owner("op-switchover-1"))
    assert lock_files(tmp_path) == ["rabat/massar.lock"]


def test_a_live_operation_on_this_host_is_never_broken(tmp_path):
    make_lock(tmp_path).acquire(owner("op-switchover-0"))
    with pytest.raises(RefusedError, match="running on this host"):
        make_lock(tmp_path).acquire(owner("op-switchover-1"), break_stale=True)


def test_resume_takes_over_its_own_dead_lock(tmp_path):
    crashed = owner("op-switchover-1", dead_pid())
    make_lock(tmp_path).acquire(crashed)
    resumed = owner("op-switchover-1", started=2.0)
    lock = make_lock(tmp_path)
    lock.acquire(resumed)
    assert json.loads((tmp_path / "backup" / "massar.lock").read_text())["pid"] == os.getpid()
    lock.release(resumed)
    assert lock_files(tmp_path) == []


def finish(tmp_path, op: str) -> None:
    journal = Journal.create(tmp_path / "state", op, {"kind": "switchover", "service": "massar"})
    journal.append("finish", outcome="success")


def test_the_lock_of_a_finished_operation_is_released_and_said(tmp_path):
    left = owner("op-switchover-0", dead_pid())
    make_lock(tmp_path).acquire(left)
    finish(tmp_path, "op-switchover-0")
    said = []
    lock = make_lock(tmp_path)
    lock.acquire(owner("op-switchover-1"), say=said.append)
    assert said == ["released the lock left by finished operation op-switchover-0"]
    assert json.loads((tmp_path / "rabat" / "massar.lock").read_text())["operation"] == "op-switchover-1"


def test_release_if_finished(tmp_path):
    make_lock(tmp_path).acquire(owner("op-switchover-0", dead_pid()))
    assert make_lock(tmp_path).release_if_finished("op-switchover-0") == []  # not finished: kept
    finish(tmp_path, "op-switchover-0")
    said = []
    assert make_lock(tmp_path).release_if_finished("op-switchover-0", said.append) == ["local", "backup", "rabat"]
    assert said == ["released the lock left by finished operation op-switchover-0"]
    assert lock_files(tmp_path) == []


def test_a_failure_while_acquiring_gives_back_what_it_took(tmp_path):
    (tmp_path / "rabat").mkdir()
    (tmp_path / "rabat").chmod(0o500)  # nobody but root can create there
    if os.geteuid() == 0:
        (tmp_path / "rabat").chmod(0o700)
        (tmp_path / "rabat" / "massar.lock").mkdir()  # a directory where the lock file goes: link() fails
    lock = make_lock(tmp_path)
    with pytest.raises(Exception):
        lock.acquire(owner("op-switchover-1"))
    assert not (tmp_path / "state" / "locks" / "massar.lock").exists()
    assert not (tmp_path / "backup" / "massar.lock").exists()


# -- races between threads ----------------------------------------------------------------------

def race(attempt, count: int = 2) -> list:
    """Runs attempt(i) in `count` threads released at the same instant; returns their results."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = attempt(i)
        except RefusedError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_two_operations_at_the_same_instant_one_wins(tmp_path):
    for attempt in range(40):
        root = tmp_path / str(attempt)
        owners = [owner(f"op-switchover-{attempt}-{i}") for i in range(2)]
        results = race(lambda i: make_lock(root).acquire(owners[i]) or "acquired")
        assert sorted(map(str, results))[0] == "acquired" and isinstance(
            next(r for r in results if r != "acquired"), RefusedError), results
        winner = owners[results.index("acquired")]
        assert {json.loads(p.read_text())["operation"] for p in root.rglob("massar.lock")} == {winner.operation}
        assert len(list(root.rglob("massar.lock"))) == 3


@pytest.mark.parametrize("break_lock", [False, True])
def test_two_takers_of_one_dead_lock_one_wins(tmp_path, break_lock):
    """Two resumers of a crashed operation (or two --break-lock) race for its lock."""
    for attempt in range(30):
        root = tmp_path / str(attempt)
        crashed_op = "op-switchover-1" if not break_lock else "op-switchover-0"
        make_lock(root).acquire(owner(crashed_op, dead_pid()))
        owners = [owner("op-switchover-1", started=10.0 + i) for i in range(2)]
        results = race(lambda i: make_lock(root).acquire(owners[i], break_stale=break_lock) or "acquired")
        assert results.count("acquired") == 1, results
        winner = owners[results.index("acquired")]
        assert {p.read_text() for p in root.rglob("massar.lock")} == {winner.to_json()}
        assert len(list(root.rglob("massar.lock"))) == 3
