"""systemd's readiness protocol without a dependency: one datagram to $NOTIFY_SOCKET.

With `Type=notify`, systemd waits for READY=1 before it calls the agent started. Outside
systemd (no NOTIFY_SOCKET) this does nothing.
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
