"""systemd's readiness protocol without a dependency: one datagram to $NOTIFY_SOCKET.

With `Type=notify`, systemd waits for READY=1 before it calls the agent started; with
`WatchdogSec=`, it kills and restarts the agent unless WATCHDOG=1 arrives within that time.
Outside systemd (no NOTIFY_SOCKET) this does nothing.
"""
from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("dcctl.agent")


def notify(state: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("cannot notify systemd (%s): %s", state.split("\n")[0], exc)
        return False
    return True


def watchdog_interval(environ: dict[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between two WATCHDOG=1 pings (half of WatchdogSec=, as sd_watchdog_enabled(3)
    advises), or None when systemd does not watch this process.

    >>> watchdog_interval({"WATCHDOG_USEC": "30000000"}, 7)
    15.0
    >>> watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, 7) is None  # meant for another
    True
    >>> watchdog_interval({}, 7) is None, watchdog_interval({"WATCHDOG_USEC": "0"}, 7) is None
    (True, True)
    """
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 2_000_000
