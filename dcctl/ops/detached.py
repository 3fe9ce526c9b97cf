"""A tool that must not be cut off half-way (pg_rewind) runs detached at its site: in its own
session, its output in a file, its exit code written when it ends. A dcctl that dies, is
interrupted or loses its SSH connection leaves it running; the next dcctl (resume) finds it by
its job directory and waits for it, or learns that it was lost (the host rebooted, someone
killed it) and what that means for the directory it was changing.

The job directory holds: `owner` (the operation that started it), `pid`, `log` and, once the
tool has ended, `rc`.
"""
from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass
from typing import Sequence

from dcctl.errors import DcctlError, ToolError
from dcctl.transport.base import Transport

# $0 is the marker that identifies our wrapper in /proc/<pid>/cmdline.
MARKER = "dcctl-detached"

_START = r'''
dir="$1"; owner="$2"; shift 2
mkdir -p "$dir" && rm -f "$dir/rc" "$dir/rc.tmp" "$dir/log" "$dir/pid" || exit 3
printf '%s\n' "$owner" > "$dir/owner" || exit 3
setsid sh -c '
  dir="$1"; shift
  "$@" > "$dir/log" 2>&1 < /dev/null
  echo $? > "$dir/rc.tmp" && mv "$dir/rc.tmp" "$dir/rc"
' dcctl-detached "$dir" "$@" < /dev/null > /dev/null 2>&1 &
echo $! > "$dir/pid"
'''

_STATUS = r'''
dir="$1"
[ -d "$dir" ] || { echo none; exit 0; }
owner=$(cat "$dir/owner" 2>/dev/null)
if [ -f "$dir/rc" ]; then echo "done $(cat "$dir/rc") $owner"; exit 0; fi
pid=$(cat "$dir/pid" 2>/dev/null)
args() { tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null; }
if [ -n "$pid" ] && args | grep -qxF dcctl-detached && args | grep -qxF "$dir"; then
  echo "running $pid $owner"; exit 0
fi
# The wrapper leads its own process group: a tool it started may outlive a killed wrapper.
# Zombies do not count (nothing may reap them for a long time).
group_alive() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v g="$1" '{ sub(/.*\) /, ""); if ($3 == g && $1 != "Z") f = 1 }
    END { exit !f }'
}
if [ -n "$pid" ] && group_alive "$pid"; then echo "running $pid $owner"; exit 0; fi
[ -f "$dir/rc" ] && { echo "done $(cat "$dir/rc") $owner"; exit 0; }
echo "lost - $owner"
'''


# Blocks (up to $2 hundredths of a second) while the wrapper runs and has written no exit code:
# one command for the whole wait, instead of one status command per poll.
_WAIT = r'''
dir="$1"; limit="$2"
pid=$(cat "$dir/pid" 2>/dev/null)
now() { read -r up _ < /proc/uptime; echo "${up%.*}${up#*.}"; }
running() { [ -n "$pid" ] && [ -e "/proc/$pid" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; }
end=$(( $(now) + limit ))
while [ ! -f "$dir/rc" ] && running && [ "$(now)" -lt "$end" ]; do sleep 0.01; done
'''


@dataclass(frozen=True)
class JobStatus:
    state: str  # none | running | done | lost
    rc: int | None = None
    owner: str | None = None

    @classmethod
    def parse(cls, line: str) -> "JobStatus":
        """
        >>> JobStatus.parse("done 0 20261204T-rejoin-ab")
        JobStatus(state='done', rc=0, owner='20261204T-rejoin-ab')
        >>> JobStatus.parse("running 123 op").state, JobStatus.parse("lost - op").owner
        ('running', 'op')
        >>> JobStatus.parse("none")
        JobStatus(state='none', rc=None, owner=None)
        """
        parts = line.split()
        if not parts or parts[0] == "none":
            return cls("none")
        owner = parts[2] if len(parts) > 2 else None
        rc = int(parts[1]) if parts[0] == "done" and parts[1].lstrip("-").isdigit() else None
        return cls(parts[0], rc, owner)


def start_argv(job_dir: str, owner: str, argv: Sequence[str]) -> list[str]:
    return ["sh", "-c", _START, "dcctl-start-detached", job_dir, owner, *argv]


def status_argv(job_dir: str) -> list[str]:
    return ["sh", "-c", _STATUS, "dcctl-detached-status", job_dir]


def start(transport: Transport, job_dir: str, owner: str, argv: Sequence[str]) -> None:
    transport.run(start_argv(job_dir, owner, argv), timeout=30).check(f"starting {argv[0]} detached")


def status(transport: Transport, job_dir: str) -> JobStatus:
    result = transport.run(status_argv(job_dir), timeout=30)
    result.check("reading the state of a detached job")
    return JobStatus.parse(result.stdout.strip())


def wait(transport: Transport, job_dir: str, deadline: float, chunk: float = 30.0) -> JobStatus:
    """Until the job has ended (done) or is known lost; a job still running at the deadline is
    left running (it must not be cut off) and reported. The waiting runs at the site, in chunks
    (a dcctl that dies while waiting only ends the wait, never the job)."""
    end = time.monotonic() + deadline
    while True:
        current = status(transport, job_dir)
        if current.state in ("done", "lost", "none"):
            return current
        left = end - time.monotonic()
        if left <= 0:
            raise ToolError(f"the detached job in {job_dir} is still running after {deadline:g} s; it is left "
                            f"running (cutting it off could wreck what it is changing)",
                            hint="wait for it, then `dcctl resume` the operation")
        limit = min(left, chunk)
        transport.run(["sh", "-c", _WAIT, "dcctl-detached-wait", job_dir, str(max(1, int(limit * 100)))],
                      timeout=limit + 30)


def log_tail(transport: Transport, job_dir: str) -> str:
    try:
        return transport.read_file(posixpath.join(job_dir, "log")).decode(errors="replace")[-4000:]
    except DcctlError:
        return ""


def clear(transport: Transport, job_dir: str) -> None:
    transport.run(["rm", "-rf", "--", job_dir], timeout=30)
