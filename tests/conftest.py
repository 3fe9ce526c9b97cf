import os
import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def open_tmp():
    """A temporary directory every user can traverse.

    pytest's tmp_path lives under /tmp/pytest-of-root (mode 0700) when the suite runs as root,
    which the unprivileged user running PostgreSQL or logging in over SSH cannot enter.
    """
    path = Path(tempfile.mkdtemp(prefix="dcctl-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def unprivileged_user() -> str:
    """The OS user that runs servers in tests: postgres when we are root, else ourselves."""
    if os.geteuid() == 0:
        return "postgres"
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
