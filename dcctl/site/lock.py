"""One site operation at a time: the service lock's mechanics (atomic create, owner, stale
detection, --break-lock) on a file of its own, STATE_DIR/site.lock. It sits outside
STATE_DIR/locks/, where the service locks are, so no service name can collide with it. Each
service still takes its own lock when its part runs."""
from __future__ import annotations

from pathlib import Path

from dcctl.ops.lock import LockOwner, ServiceLock


class SiteLock(ServiceLock):
    def __init__(self, state_dir: str):
        super().__init__(state_dir, "site operations", {})
        self.local_path = Path(state_dir) / "site.lock"

    def _held_by(self, holder: LockOwner, where: str) -> str:
        return f"another site operation holds the site lock: {holder.describe()}"

    def _resume_hint(self, holder: LockOwner) -> str:
        return f"`dcctl resume {holder.operation}` continues that site operation"
