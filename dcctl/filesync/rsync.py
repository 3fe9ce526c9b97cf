"""rsync, as file sync runs it: argv builders and parsers of its output (pure, doctested).

rsync runs at the SOURCE site and pushes to the receiving site: between directories when both
sites are this machine, else over SSH (one OpenSSH master connection kept open across batches,
host keys checked against the site's known_hosts).

Semantics every run shares:
- `-a -H -A -X --numeric-ids`: owner, group, permissions, mtimes, hard links, ACLs, xattrs; a store
  with `owners: ignore` adds `--no-owner --no-group` (a receiver that is not root cannot chown).
- `--backup --backup-dir=<holding>/<day> --suffix=~<time>`: nothing is lost; whatever would be
  deleted or overwritten on the receiver is moved to the dated holding area first.
- A reconciliation compares mtimes to the nanosecond (`--modify-window=-1`): rsync's default quick
  check (one-second resolution) skips a file rewritten with the same size within the same second.
- A batch (the paths named by inotify events) compares content (`-c`): those files are known to
  have changed, and even a nanosecond mtime cannot tell apart two writes in one clock tick.
- Exit 24 (a file vanished while rsync ran) is normal on a live store.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Literal

from dcctl.flock import GUARD_BUSY_RC, under_flock

OK_CODES = (0, 24)
MAX_DELETE_RC = 25
LOCK_BUSY_RC = GUARD_BUSY_RC  # flock -E: the store's lock stayed busy for the whole wait
HANDED_OVER_RC = 76  # a switchover or failover handed this site's pushing over to the other site

EXIT_MEANINGS = {
    1: "syntax or usage error", 2: "protocol incompatibility", 3: "errors selecting input/output files or dirs",
    5: "error starting client-server protocol", 10: "error in socket I/O", 11: "error in file I/O",
    12: "error in rsync protocol data stream", 14: "error in IPC code", 20: "interrupted",
    23: "partial transfer due to error", 24: "some files vanished before they could be transferred",
    25: "the --max-delete limit stopped deletions", 30: "timeout in data send/receive",
    35: "timeout waiting for daemon connection", 127: "rsync not found",
    255: "the SSH connection failed", LOCK_BUSY_RC: "another sync of this store held its lock",
}


@dataclass(frozen=True)
class SshTarget:
    """How rsync at the source site reaches the receiving site: that site's SSH transport config."""

    host: str
    port: int
    user: str
    known_hosts: str
    key_file: str | None
    connect_timeout: float
    keepalive_interval: float
    control_path: str
    control_persist: float


def ssh_argv(t: SshTarget) -> list[str]:
    """The ssh command rsync runs (`-e`), reusing one master connection (ControlMaster).

    >>> t = SshTarget("10.0.0.2", 22, "postgres", "/etc/dcctl/kh", "/etc/dcctl/id", 5, 10, "/s/ssh.sock", 300)
    >>> " ".join(ssh_argv(t))  # doctest: +NORMALIZE_WHITESPACE
    'ssh -p 22 -l postgres -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/etc/dcctl/kh
     -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=5 -o ServerAliveInterval=10 -o ServerAliveCountMax=3
     -o ControlMaster=auto -o ControlPath=/s/ssh.sock -o ControlPersist=300 -o IdentitiesOnly=yes
     -i /etc/dcctl/id'
    """
    argv = ["ssh", "-p", str(t.port), "-l", t.user, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={t.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"ConnectTimeout={max(1, round(t.connect_timeout))}"]
    if t.keepalive_interval > 0:
        argv += ["-o", f"ServerAliveInterval={max(1, round(t.keepalive_interval))}", "-o", "ServerAliveCountMax=3"]
    argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={t.control_path}",
             "-o", f"ControlPersist={max(1, round(t.control_persist))}"]
    if t.key_file:
        argv += ["-o", "IdentitiesOnly=yes", "-i", t.key_file]
    return argv


def ssh_exit_argv(t: SshTarget) -> list[str]:
    """Ask the master connection to close (`ssh -O exit`)."""
    return ["ssh", "-o", f"ControlPath={t.control_path}", "-O", "exit", "-p", str(t.port), "-l", t.user, t.host]


def rsh_option(argv: list[str]) -> str:
    """rsync's -e value: words separated by spaces, quotes keep spaces inside one word.

    >>> rsh_option(["ssh", "-i", "/a b/id"])
    "ssh -i '/a b/id'"
    """
    for word in argv:
        if "'" in word and '"' in word:
            raise ValueError(f"cannot pass {word!r} to rsync -e (both quote characters)")
    return " ".join(word if re.fullmatch(r"[\w@%+=:,./-]+", word) else
                    (f"'{word}'" if "'" not in word else f'"{word}"') for word in argv)


@dataclass(frozen=True)
class Target:
    """The receiving store, as rsync at the source site names it."""

    path: str
    ssh: SshTarget | None = None
    rsync_path: str = "rsync"

    def spec(self) -> str:
        """
        >>> Target("/srv/docs").spec(), Target("/srv/docs/", SshTarget("h", 22, "u", "k", None, 5, 0, "c", 9)).spec()
        ('/srv/docs/', 'h:/srv/docs/')
        """
        path = self.path.rstrip("/") + "/"
        return f"{self.ssh.host}:{path}" if self.ssh else path


Mode = Literal["reconcile", "batch", "scoped"]


@dataclass(frozen=True)
class Job:
    """One rsync run.

    reconcile: the whole store, with deletions (--delete-delay);
    batch: the NUL-separated paths on stdin, content compared (-c); a path gone meanwhile is skipped;
    scoped: the paths on stdin, each directory given as `dir/.` syncs its immediate contents
    (deletions included, -d --delete) without recursing: how a batch deletes, and how a switchover
    syncs what changed; directories it created are then sent whole by a recursive run.
    """

    mode: Mode
    source: str
    target: Target
    holding_dir: str
    suffix: str
    max_delete: int | None = None
    dry_run: bool = False
    list_deletions: bool = False
    itemize: bool = False
    progress: bool = False
    recursive: bool = False
    io_timeout: float = 60.0
    keep_owners: bool = True  # False: the store's `owners: ignore` (the receiver cannot chown)


def rsync_argv(job: Job) -> list[str]:
    """
    >>> job = Job("batch", "/srv/docs", Target("/mirror/docs"), "/st/holding/2026-11-24", "~103005.000001")
    >>> rsync_argv(job)  # doctest: +NORMALIZE_WHITESPACE
    ['rsync', '-aHAX', '--numeric-ids', '--backup', '--backup-dir=/st/holding/2026-11-24', '--suffix=~103005.000001',
     '--timeout=60', '--stats', '--no-human-readable', '--files-from=-', '--from0', '--checksum',
     '--ignore-missing-args', '/srv/docs/', '/mirror/docs/']
    >>> rsync_argv(Job("reconcile", "/srv/docs", Target("/m"), "/h", "~1", max_delete=3, dry_run=True,
    ...                list_deletions=True))  # doctest: +NORMALIZE_WHITESPACE
    ['rsync', '-aHAX', '--numeric-ids', '--backup', '--backup-dir=/h', '--suffix=~1', '--timeout=60', '--stats',
     '--no-human-readable', '--delete-delay', '--modify-window=-1', '--max-delete=3', '--dry-run',
     '--info=del', '/srv/docs/', '/m/']
    >>> rsync_argv(Job("reconcile", "/srv/docs", Target("/m"), "/h", "~1", keep_owners=False))[:4]
    ['rsync', '-aHAX', '--no-owner', '--no-group']
    """
    t = job.target
    owners = [] if job.keep_owners else ["--no-owner", "--no-group"]
    argv = [*shlex.split(t.rsync_path), "-aHAX", *owners, "--numeric-ids", "--backup",
            f"--backup-dir={job.holding_dir}", f"--suffix={job.suffix}", f"--timeout={max(1, round(job.io_timeout))}",
            "--stats", "--no-human-readable"]
    if job.mode == "reconcile":
        argv += ["--delete-delay", "--modify-window=-1"]
    elif job.mode == "batch":
        # No --delete-missing-args: rsync 3.2.7 (Debian 12) and 3.4 reject a missing path below the
        # top level ("invalid file mode 00", RsyncProject/rsync#910). Deletions go by their parent
        # directory instead (a "scoped" run of "parent/.").
        argv += ["--files-from=-", "--from0", "--checksum", "--ignore-missing-args"]
    elif job.recursive:
        argv += ["--files-from=-", "--from0", "-r", "--modify-window=-1", "--ignore-missing-args"]
    else:
        argv += ["--files-from=-", "--from0", "--modify-window=-1", "--delete", "--ignore-missing-args"]
    if job.max_delete is not None:
        argv.append(f"--max-delete={job.max_delete}")
    if job.dry_run:
        argv.append("--dry-run")
    info = (["del"] if job.list_deletions else []) + (["progress2"] if job.progress else [])
    if info:
        argv.append("--info=" + ",".join(info))
    if job.itemize:
        argv.append("--out-format=%i %n")
    if t.ssh is not None:
        argv += ["-e", rsh_option(ssh_argv(t.ssh))]
        if t.rsync_path != "rsync":
            argv.append(f"--rsync-path={t.rsync_path}")
    return argv + [job.source.rstrip("/") + "/", t.spec()]


def locked(argv: list[str], lock_file: str, wait: float) -> list[str]:
    """Run argv holding the store's lock: one rsync at a time per store, agent or operator.

    >>> locked(["rsync", "x"], "/st/documents.lock", 600)
    ['flock', '-E', '75', '-w', '600', '/st/documents.lock', 'rsync', 'x']
    """
    return under_flock(lock_file, wait, argv)


_UNLESS_HANDED_OVER = ('if [ -e "$1" ] && read -r handed _ < "$1" && [ "$handed" -ge "$2" ]; then exit 76; fi; '
                       'shift 2; exec "$@"')


def unless_handed_over(argv: list[str], mark: str, timeline: int) -> list[str]:
    """Run argv only if no operation has handed the pushing of this site (on `timeline`) over to
    the other site. Inside the store's lock, the check and the rsync are one: an operation that
    writes the mark, then takes the lock once, knows that no push from here runs afterwards.

    >>> unless_handed_over(["rsync", "x"], "/st/handed-over", 3)[3:]
    ['dcctl-push', '/st/handed-over', '3', 'rsync', 'x']
    """
    return ["sh", "-c", _UNLESS_HANDED_OVER, "dcctl-push", mark, str(timeline), *argv]


def files_from(paths: list[bytes]) -> bytes:
    """The --files-from=- --from0 input: relative paths, NUL-terminated (any byte but NUL is allowed).

    >>> files_from([b"a b", "ملف\\nسطر".encode()])
    b'a b\\x00\\xd9\\x85\\xd9\\x84\\xd9\\x81\\n\\xd8\\xb3\\xd8\\xb7\\xd8\\xb1\\x00'
    """
    return b"".join(path + b"\0" for path in paths)


@dataclass(frozen=True)
class Stats:
    entries: int = 0  # entries in the source's file list (files, directories, links ...)
    created: int = 0
    deleted: int = 0
    files_transferred: int = 0
    bytes_transferred: int = 0  # size of the files whose content was sent
    total_size: int = 0

    @property
    def receiver_entries(self) -> int:
        """Entries the receiving store had before this run: the source's, less those created, plus those deleted."""
        return max(0, self.entries - self.created + self.deleted)


_STATS = {
    "Number of files": "entries", "Number of created files": "created", "Number of deleted files": "deleted",
    "Number of regular files transferred": "files_transferred", "Total transferred file size": "bytes_transferred",
    "Total file size": "total_size",
}


def parse_stats(text: str) -> Stats:
    """The --stats block (with or without digit separators).

    >>> out = '''deleting a
    ... Number of files: 1,203 (reg: 1,000, dir: 203)
    ... Number of created files: 2 (reg: 2)
    ... Number of deleted files: 1 (reg: 1)
    ... Number of regular files transferred: 2
    ... Total file size: 10,240 bytes
    ... Total transferred file size: 2048 bytes
    ... '''
    >>> s = parse_stats(out); (s.entries, s.created, s.deleted, s.files_transferred, s.bytes_transferred)
    (1203, 2, 1, 2, 2048)
    >>> s.receiver_entries
    1202
    """
    values = {}
    for line in text.splitlines():
        label, sep, rest = line.partition(":")
        if sep and label.strip() in _STATS:
            number = re.match(r"\s*([\d,.]+)", rest)
            if number:
                values[_STATS[label.strip()]] = int(number.group(1).replace(",", "").replace(".", ""))
    return Stats(**values)


def unescape(name: str) -> str:
    r"""rsync prints unprintable bytes of names as \#ooo (octal).

    >>> unescape("new\\#012line"), unescape("plain")
    ('new\nline', 'plain')
    """
    if "\\#" not in name:
        return name
    raw = re.sub(rb"\\#([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), name.encode("utf-8", "surrogateescape"))
    return raw.decode("utf-8", "replace")


def parse_deletions(text: str) -> list[str]:
    """Paths from --info=del lines ("deleting PATH"), as the receiving store names them.

    >>> parse_deletions("deleting sub/b\\\\#012c\\ndeleting sub/\\nNumber of files: 3\\n")
    ['sub/b\\nc', 'sub/']
    """
    return [unescape(line[len("deleting "):]) for line in text.splitlines() if line.startswith("deleting ")]


_ITEM = re.compile(r"^([<>ch.*][fdLDS][^ ]{9}) (.*)$")


def parse_created_dirs(text: str) -> list[str]:
    """Directories an itemized run created on the receiver (`cd+++++++++ dir/`).

    >>> parse_created_dirs("cd+++++++++ a/new/\\n>f+++++++++ a/new/x\\n.d..t...... a/\\n")
    ['a/new']
    """
    out = []
    for line in text.splitlines():
        match = _ITEM.match(line)
        if match and match.group(1).startswith("cd+"):
            out.append(unescape(match.group(2)).rstrip("/"))
    return out


_PROGRESS = re.compile(r"^\s*([\d,]+)\s+(\d+)%.*?(?:\((?:xfr#(\d+), )?(?:ir|to)-chk=(\d+)/(\d+)\))?\s*$")


def parse_progress(chunk: str) -> tuple[int, int, int] | None:
    """The last --info=progress2 line in a chunk of output: (bytes so far, entries checked, entries known).

    >>> parse_progress("\\r   52,428,800 100%  757.10MB/s    0:00:00 (xfr#1, to-chk=0/2)")
    (52428800, 2, 2)
    >>> parse_progress("\\r          32768   0%    0.00kB/s    0:00:00  ")
    (32768, 0, 0)
    >>> parse_progress("sent 3 bytes") is None
    True
    """
    for piece in reversed(re.split(r"[\r\n]", chunk)):
        match = _PROGRESS.match(piece)
        if match:
            done = int(match.group(1).replace(",", ""))
            left, known = int(match.group(4) or 0), int(match.group(5) or 0)
            return done, known - left, known
    return None


def describe_exit(rc: int) -> str:
    """
    >>> describe_exit(23), describe_exit(99)
    ('rsync exit 23 (partial transfer due to error)', 'rsync exit 99')
    """
    meaning = EXIT_MEANINGS.get(rc)
    return f"rsync exit {rc} ({meaning})" if meaning else f"rsync exit {rc}"


def error_tail(stderr: str, lines: int = 3) -> str:
    """The last meaningful lines of rsync's stderr, one line."""
    kept = [line.strip() for line in stderr.splitlines()
            if line.strip() and not line.startswith("rsync error: some files/attrs were not transferred")]
    return " | ".join(kept[-lines:])
