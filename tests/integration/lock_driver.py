"""Takes the lab service's operation lock through the lab config's real transports (local or ssh),
starting at the test barrier (DCCTL_TEST_LOCK_BARRIER); prints "acquired" or "refused <why>".
The winner holds the lock until a line arrives on stdin, then releases it. LOCAL_STATE_DIR stands
for the state_dir of another host running dcctl: two drivers with their own meet only at the sites.

    python tests/integration/lock_driver.py CONFIG OPERATION LOCAL_STATE_DIR
"""
import os
import socket
import sys
import time

from dcctl.config.load import load_config
from dcctl.errors import RefusedError
from dcctl.ops.lock import LockOwner, ServiceLock, wait_at_test_barrier
from dcctl.transport import open_transport


def main(config_path: str, operation: str, local_state_dir: str) -> int:
    config = load_config(config_path)
    name, service = config.service(None)
    transports = {site: open_transport(site, cfg) for site, cfg in service.sites.items()}
    for transport in transports.values():
        transport.connect()  # before the barrier: the race is about the lock, not the handshakes
    lock = ServiceLock(local_state_dir, name,
                       {site: (transports[site], cfg.state_dir) for site, cfg in service.sites.items()})
    me = LockOwner(operation, socket.gethostname(), os.getpid(), time.time())
    wait_at_test_barrier()
    try:
        lock.acquire(me)
    except RefusedError as exc:
        print(f"refused {exc.message}", flush=True)
        return 5
    print("acquired", flush=True)
    sys.stdin.readline()
    lock.release(me)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3]))
