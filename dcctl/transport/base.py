"""How dcctl reaches a site: one interface, so every operation works over each transport."""
from __future__ import annotations

import abc
import shlex
from dataclasses import dataclass
from typing import Callable, Sequence

OutputCallback = Callable[[str], None]

from dcctl.errors import DcctlError, ToolError, UnreachableError
from dcctl.flock import GUARD_BUSY_RC, under_flock

# Compare-and-remove under the guard's flock: removes $1 only if it holds exactly what is on stdin.
_REMOVE_IF_SAME = 'cmp -s - "$1" && rm -f -- "$1" && echo removed'


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def check(self, what: str | None = None) -> "Completed":
        """Raise ToolError (with the tool's stderr) unless the command succeeded."""
        if self.rc != 0:
            label = what or command_label(self.argv)
            raise ToolError(f"{label} failed with exit code {self.rc}", rc=self.rc,
                            stderr=self.stderr or self.stdout)
        return self


def command_label(argv: Sequence[str]) -> str:
    """A short name for a command in messages: a script run with `sh -c` is named by its $0,
    never quoted whole.

    >>> command_label(["sh", "-c", "long script", "dcctl-fence", "/pg"])
    'dcctl-fence /pg'
    >>> command_label(["pg_ctl", "start", "-D", "/pg", "-l", "log"])
    'pg_ctl start -D'
    """
    if len(argv) >= 3 and argv[0] in ("sh", "bash") and argv[1] == "-c":
        return shlex.join(argv[3:5]) if len(argv) > 3 else f"{argv[0]} -c script"
    return shlex.join(argv[:3])


class Transport(abc.ABC):
    """Runs argv lists at a site (never a shell string) and moves small files in and out.

    `run` raises CommandTimeout when the deadline passes and UnreachableError when the site
    cannot be reached; a command that runs and fails returns its rc (use .check()).
    """

    site: str
    description: str  # e.g. "ssh postgres@10.0.0.2:22" or "local"

    @abc.abstractmethod
    def run(self, argv: Sequence[str], *, timeout: float | None = None, input: str | bytes | None = None,
            env: dict[str, str] | None = None, on_stderr: OutputCallback | None = None) -> Completed:
        """on_stderr, when given, receives stderr text as it arrives (progress of long tools)."""

    @abc.abstractmethod
    def read_file(self, path: str) -> bytes: ...

    @abc.abstractmethod
    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Write atomically (temp file + rename) so a reader never sees half a file."""

    @abc.abstractmethod
    def create_exclusive(self, path: str, data: bytes, mode: int = 0o644) -> bool:
        """Create `path` holding `data` unless it exists, in one atomic step: True if this call
        created it, False if it was already there. A reader sees no file or the whole of `data`."""

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path], timeout=30).rc == 0

    def remove_if_same(self, path: str, data: bytes, guard: str, wait: float) -> bool:
        """Remove `path` if it holds exactly `data`, holding flock on `guard` (a directory) meanwhile,
        so that of two processes removing the same content only one succeeds. True if removed;
        ToolError if the guard stays locked for `wait` seconds."""
        result = self.run(under_flock(guard, wait, ["sh", "-c", _REMOVE_IF_SAME, "sh", path]), input=data,
                          timeout=wait + 30)
        if result.rc == GUARD_BUSY_RC:
            raise guard_busy(self.site, guard, wait, path)
        return result.stdout.strip() == "removed"

    def connect(self) -> None:
        """Open the connection now (ssh), so later commands pay no handshake. Raises UnreachableError."""

    def close(self) -> None:
        """Release the connection. The transport may be used again afterwards."""

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def guard_busy(site: str, guard: str, wait: float, path: str) -> ToolError:
    return ToolError(f"site {site}: {guard} stayed flocked for {wait:g} s while dcctl tried to remove {path}",
                     rc=GUARD_BUSY_RC)


def in_made_dir(transport: Transport, directory: str, attempt: Callable[[], object]):
    """attempt() (a write into `directory`), and once more after `mkdir -p` if it failed: the
    directory exists on every run but a site's first, which so pays the only extra command."""
    try:
        return attempt()
    except UnreachableError:
        raise
    except (DcctlError, OSError):
        transport.run(["mkdir", "-p", directory], timeout=30).check(f"creating {directory} at site {transport.site}")
        return attempt()
