"""The drill's copy, paced evenly at the standby's site.

`pg_basebackup --max-rate` is enforced by the walsender: it sends max_rate/8 at full speed, then
sleeps, eight times a second. On a host that also serves production, each such burst takes the
CPUs for a few milliseconds, and the production commits that arrive then are the slowest ones
(docs/benchmarks.md: at 64 MB/s the writer's p99 is 3.1x its p99 without a copy; the same copy
paced evenly, 1.05x). So the copy is taken as one tar stream, passed through a small pacer that
forwards 64 KiB at a time at evenly spaced moments, and unpacked; TCP back-pressure holds the
walsender to the pacer's even pace.

The pacer is a few lines of Python run by the site's `python3` (the dcctl agent's own
requirement), given on its command line: nothing has to be installed at the site for it.
"""
from __future__ import annotations

PACER = r"""
import os, sys, time
rate, sent, start = float(sys.argv[1]), 0, time.monotonic()
while True:
    data = os.read(0, 65536)
    if not data:
        break
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]
    sent += len(data)
    ahead = sent / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
"""

# sh -c PACED_COPY sh DIR BYTES_PER_SECOND PACER pg_basebackup-argv...
# Exit: pg_basebackup's status when it failed (dash has no pipefail: it is kept in a file), else
# the pacer's or tar's; 127 with a sentence when the site has no python3.
PACED_COPY = r"""
dir="$1"; rate="$2"; pacer="$3"; shift 3
command -v python3 >/dev/null 2>&1 || {
  echo "no python3 on PATH at this site: the drill paces its copy with it (or set drill.pacing: server)" >&2
  exit 127; }
mkdir -m 700 -p "$dir" || exit 1
status="$dir.copy-status"
{ "$@"; echo "$?" >"$status"; } | python3 -c "$pacer" "$rate" | tar -x -f - -C "$dir"
unpacked=$?
copied=$(cat "$status" 2>/dev/null || echo 1); rm -f "$status"
[ "$copied" -ne 0 ] && exit "$copied"
exit "$unpacked"
"""


def paced_copy(target_dir: str, bytes_per_second: int, copy_argv: list[str]) -> list[str]:
    """argv (for the site's sh) of copy_argv's tar stream, paced, unpacked into target_dir.

    >>> argv = paced_copy("/s/pgdata", 1024, ["pg_basebackup", "-D", "-"])
    >>> argv[4:6], argv[6] == PACER, argv[7:]
    (['/s/pgdata', '1024'], True, ['pg_basebackup', '-D', '-'])
    """
    return ["sh", "-c", PACED_COPY, "sh", target_dir, str(bytes_per_second), PACER, *copy_argv]
