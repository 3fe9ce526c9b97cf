"""argv builders for PostgreSQL's own tools (pure): the transports run them as lists."""
from __future__ import annotations

import posixpath


def _bin(bin_dir: str, tool: str) -> str:
    return posixpath.join(bin_dir, tool)


def pg_ctl_start(bin_dir: str, data_dir: str, log_file: str, timeout: int = 60) -> list[str]:
    return [_bin(bin_dir, "pg_ctl"), "start", "-D", data_dir, "-l", log_file, "-w", "-t", str(timeout)]


def pg_ctl_stop(bin_dir: str, data_dir: str, mode: str = "fast", timeout: int = 60) -> list[str]:
    return [_bin(bin_dir, "pg_ctl"), "stop", "-D", data_dir, "-m", mode, "-w", "-t", str(timeout)]


def pg_ctl_status(bin_dir: str, data_dir: str) -> list[str]:
    return [_bin(bin_dir, "pg_ctl"), "status", "-D", data_dir]


def initdb(bin_dir: str, data_dir: str, superuser: str, pwfile: str) -> list[str]:
    return [_bin(bin_dir, "initdb"), "-D", data_dir, "-U", superuser, f"--pwfile={pwfile}", "--data-checksums",
            "--auth-local=peer", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"]


def pg_basebackup(bin_dir: str, data_dir: str, conninfo: str, slot: str | None, *, sync: bool = True,
                  max_rate_mb: int = 0, label: str | None = None, manifest: bool = True) -> list[str]:
    """
    >>> pg_basebackup("/b", "/copy", "port=5433", None, sync=False, max_rate_mb=64, label="drill", manifest=False)[8:]
    ['--no-password', '--progress', '--no-sync', '--max-rate=64M', '-l', 'drill', '--no-manifest']
    """
    argv = [_bin(bin_dir, "pg_basebackup"), "-D", data_dir, "-d", conninfo, "-X", "stream",
            "--checkpoint=fast", "--no-password", "--progress"]
    if slot:
        argv += ["-S", slot]
    if not sync:
        argv.append("--no-sync")
    if max_rate_mb:
        argv.append(f"--max-rate={max_rate_mb}M")
    if label:
        argv += ["-l", label]
    if not manifest:
        argv.append("--no-manifest")
    return argv


def pg_basebackup_tar_stream(bin_dir: str, conninfo: str, *, label: str) -> list[str]:
    """The base backup as one tar stream on stdout, its WAL fetched at the end into the same stream
    (pg_basebackup streams WAL only into a directory), no manifest, nothing flushed: a throwaway
    copy unpacked by a pipe.

    >>> pg_basebackup_tar_stream("/b", "port=5433", label="drill")[1:]
    ['-D', '-', '-F', 'tar', '-X', 'fetch', '-d', 'port=5433', '--checkpoint=fast', '--no-password', '--no-manifest', '-l', 'drill']
    """
    return [_bin(bin_dir, "pg_basebackup"), "-D", "-", "-F", "tar", "-X", "fetch", "-d", conninfo,
            "--checkpoint=fast", "--no-password", "--no-manifest", "-l", label]


def conninfo(**params: str | int | None) -> str:
    """libpq key=value string, values quoted as libpq wants.

    >>> conninfo(host="127.0.0.1", port=5432, user="replicator", passfile="/a b/pgpass", password=None)
    "host=127.0.0.1 port=5432 user=replicator passfile='/a b/pgpass'"
    """
    parts = []
    for name, value in params.items():
        if value is None:
            continue
        text = str(value)
        if not text or any(c in text for c in " '\\"):
            text = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
        parts.append(f"{name}={text}")
    return " ".join(parts)


# The start of a script that acts on the postmaster of data directory $1: finds it in
# postmaster.pid and checks that the PID runs in that directory (its working directory), so a
# reused PID is never signalled; sets $data, $pidfile, $pid; the other arguments are left in $@.
# The working directory is read before the command line: a process that exits in between has
# already lost its command line (the kernel drops it first), so it is taken as gone, not foreign.
# on_stale: lines run when postmaster.pid names a process that is gone or a zombie.
def _verified_postmaster(on_stale: str = "") -> str:
    return r'''
data="$1"; shift; pidfile="$data/postmaster.pid"
cmdline() { tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null; }
# Process $1 exists and is not a zombie; asked with builtins only, as the polling loops do often.
alive() { state=""; { read -r _ _ state _ < "/proc/$1/stat"; } 2>/dev/null; [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]; }
pid=""; { read -r pid < "$pidfile"; } 2>/dev/null  # gone, or going away as we read it: not running
[ -n "$pid" ] || { echo "not running"; exit 0; }
cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null)
if ! alive "$pid"; then
''' + on_stale + r'''  echo "not running (stale postmaster.pid)"; exit 0
fi
real=$(cd "$data" && pwd -P)
if [ "$cwd" != "$real" ]; then
  echo "postmaster.pid names process $pid, which does not run in $real: $(cmdline "$pid")" >&2; exit 3
fi
'''


_VERIFIED_POSTMASTER = _verified_postmaster()
# Sets $now to the centiseconds since boot, from the clock (a count of loop turns would
# undercount), without the subshell that $(now) would start on every turn.
_NOW = r'''
now() { read -r up _ < /proc/uptime; now="${up%.*}${up#*.}"; }
'''


# Signal the postmaster named in postmaster.pid (its PID checked against the data directory
# first) and wait, polling every 10 ms, until postmaster.pid is gone: pg_ctl stop -w polls only
# every 100 ms. Arguments: data directory, signal, deadline in centiseconds, 1 to wait for a
# killed postmaster to be reaped.
_SIGNAL_STOP = _NOW + r'''
now; end=$(( now + $3 )); reap="$4"
''' + _verified_postmaster(on_stale=r'''
  # Killed but not yet reaped: PostgreSQL refuses to start while that PID exists, so a stop that
  # precedes a start waits for it (a fence does not: nothing starts there).
  while [ "$reap" = 1 ] && kill -0 "$pid" 2>/dev/null && now && [ "$now" -lt "$end" ]; do sleep 0.01; done
''') + r'''
sig="$1"
kill -"$sig" "$pid" || exit 4
while [ -e "$pidfile" ] && alive "$pid"; do
  now; if [ "$now" -ge "$end" ]; then echo "PostgreSQL (pid $pid) still running after the deadline" >&2; exit 5; fi
  sleep 0.01
done
echo "stopped"
'''
STOP_SIGNALS = {"smart": "TERM", "fast": "INT", "immediate": "QUIT"}


def signal_stop(data_dir: str, mode: str, timeout: float, wait_reaped: bool | None = None) -> list[str]:
    reap = mode != "immediate" if wait_reaped is None else wait_reaped
    return ["sh", "-c", _SIGNAL_STOP, "dcctl-stop", data_dir, STOP_SIGNALS[mode], str(int(timeout * 100)),
            "1" if reap else "0"]


# SIGTERM the walsenders of the postmaster of data_dir (its PID checked against the data
# directory first). A fast shutdown that has written its shutdown checkpoint still waits for each
# walsender to have its standby confirm it; a hung WAL receiver never does.
_END_WALSENDERS = _VERIFIED_POSTMASTER + r'''
ended=""
for kid in $(grep -l "^PPid:[[:space:]]*$pid\$" /proc/[0-9]*/status 2>/dev/null | cut -d/ -f3); do
  case "$(cmdline "$kid")" in
    postgres:*walsender*) kill -TERM "$kid" 2>/dev/null && ended="$ended $kid" ;;
  esac
done
echo "walsenders ended:${ended:- none}"
'''


def end_walsenders(data_dir: str) -> list[str]:
    return ["sh", "-c", _END_WALSENDERS, "dcctl-end-walsenders", data_dir]


def pg_ctl_start_nowait(bin_dir: str, data_dir: str, log_file: str) -> list[str]:
    return [_bin(bin_dir, "pg_ctl"), "start", "-D", data_dir, "-l", log_file, "-W"]


def pg_controldata(bin_dir: str, data_dir: str) -> list[str]:
    return [_bin(bin_dir, "pg_controldata"), "-D", data_dir]


def pg_rewind(bin_dir: str, data_dir: str, source: str) -> list[str]:
    return [_bin(bin_dir, "pg_rewind"), "--target-pgdata", data_dir, "--source-server", source, "--progress"]


def pg_waldump(bin_dir: str, wal_dir: str, timeline: int, start: str, start_segment: str,
               end_segment: str) -> list[str]:
    # Both segments are named: without a start segment pg_waldump takes the segment size from
    # whichever file it opens first (a zero-filled pre-allocated one makes it fail), and given a
    # start segment alone it stops at that segment's end.
    return [_bin(bin_dir, "pg_waldump"), "--path", wal_dir, "--timeline", str(timeline), "--start", start,
            start_segment, end_segment]


# Fence a postmaster within a bounded time whatever state it is in: each stage sends its signal
# and waits its share of the deadline. A frozen (SIGSTOPped) or hung server ignores SIGINT and
# SIGQUIT until it is thawed, so the last stage SIGKILLs the postmaster AND its children: a
# backend left alive could still acknowledge a commit when thawed. The PID is checked against
# the data directory (the postmaster's working directory) before anything is signalled.
_FENCE = _VERIFIED_POSTMASTER + _NOW + r'''
children() { grep -l "^PPid:[[:space:]]*$pid\$" /proc/[0-9]*/status 2>/dev/null | cut -d/ -f3; }
frozen() { grep -q '^State:[[:space:]]*T' "/proc/$pid/status" 2>/dev/null; }
gone() { for p in "$@"; do alive "$p" && return 1; done; return 0; }
while [ "$#" -ge 2 ]; do
  sig="$1"; budget="$2"; shift 2
  if [ "$sig" != KILL ] && frozen; then
    echo "PostgreSQL (pid $pid) is stopped (SIGSTOP): skipping SIG$sig" >&2; continue
  fi
  if [ "$sig" = KILL ]; then
    kids=$(children)
    kill -KILL "$pid" $kids 2>/dev/null
    watch="$pid $kids"
  else
    kill -"$sig" "$pid" 2>/dev/null
    watch="$pid"
  fi
  now; end=$(( now + budget ))
  while now && [ "$now" -lt "$end" ]; do
    if [ "$sig" != KILL ] && [ ! -e "$pidfile" ]; then echo "stopped (SIG$sig)"; exit 0; fi
    # shellcheck disable=SC2086
    if gone $watch; then echo "stopped (SIG$sig)"; exit 0; fi
    sleep 0.01
  done
  echo "PostgreSQL (pid $pid) still running after SIG$sig" >&2
done
exit 5
'''
# The escalation, as data: (mode, signal, share of the fence deadline).
FENCE_STAGES = (("fast", "INT", 0.4), ("immediate", "QUIT", 0.3), ("kill", "KILL", 0.3))


def fence_postmaster(data_dir: str, deadline: float) -> list[str]:
    """argv that stops the postmaster of data_dir within `deadline` seconds, escalating (each
    stage's budget in hundredths of a second).

    >>> fence_postmaster("/pg", 10)[5:]
    ['INT', '400', 'QUIT', '300', 'KILL', '300']
    """
    stages = []
    for _mode, signal, share in FENCE_STAGES:
        stages += [signal, str(max(1, int(deadline * share * 100)))]
    return ["sh", "-c", _FENCE, "dcctl-fence", data_dir, *stages]
