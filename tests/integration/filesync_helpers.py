"""Helpers of the file-sync tests: write into a lab's stores as the lab user, compare two stores
independently of dcctl's own code (os.walk, stat, SHA-256), run agents with fast settings."""
import hashlib
import os
import pwd
import stat
from pathlib import Path

import yaml

from dcctl.lab.agents import AgentProcess
from tests.integration.conftest import wait_for


def store(lab, site: str) -> Path:
    return lab.spec.store_dir(site, "documents")


def owner(lab) -> tuple[int, int]:
    user = pwd.getpwnam(lab.spec.user)
    return user.pw_uid, user.pw_gid


def write(lab, site: str, relative: str, data: bytes | str, mode: int | None = None) -> Path:
    """A file in the store, written and closed, owned by the lab user (as sites own their stores)."""
    path = store(lab, site) / relative
    uid, gid = owner(lab)
    parents = []
    for parent in path.relative_to(store(lab, site)).parents:
        if str(parent) != ".":
            parents.append(store(lab, site) / parent)
    for directory in reversed(parents):
        if not directory.exists():
            directory.mkdir()
            os.chown(directory, uid, gid)
    with open(path, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        os.fchown(fh.fileno(), uid, gid)
        if mode is not None:
            os.fchmod(fh.fileno(), mode)
    return path


def mkdirs(lab, site: str, relative: str) -> None:
    uid, gid = owner(lab)
    current = store(lab, site)
    for part in Path(relative).parts:
        current = current / part
        if not current.exists():
            current.mkdir()
            os.chown(current, uid, gid)


def snapshot(root: Path, below: str = "") -> dict[str, tuple]:
    """Every entry under root/below: type, mode, owner, group, and for files size, mtime (ns), SHA-256."""
    base = root / below if below else root
    out = {}
    if not base.exists():
        return out
    for directory, dirs, files in os.walk(base):
        for name in dirs + files:
            path = Path(directory) / name
            key = str(path.relative_to(root))
            try:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    out[key] = ("link", os.readlink(path))
                elif stat.S_ISDIR(st.st_mode):
                    out[key] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
                else:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                    out[key] = ("file", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                                digest)
            except FileNotFoundError:
                out[key] = ("vanished while looked at",)  # e.g. rsync's temporary file, renamed meanwhile
    return out


def wait_same(lab, below: str = "", source: str = "rabat", target: str = "backup", timeout: float = 60):
    def check():
        return snapshot(store(lab, source), below) == snapshot(store(lab, target), below)

    try:
        wait_for(check, timeout=timeout, interval=0.1, what=f"{below or 'the store'} identical at {target}")
    except AssertionError:
        a, b = snapshot(store(lab, source), below), snapshot(store(lab, target), below)
        differing = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))[:5]
        raise AssertionError(f"{below or 'store'} still differs at {target}: "
                             + "; ".join(f"{k}: {a.get(k)} != {b.get(k)}" for k in differing)) from None


def holding_root(lab, site: str = "backup") -> Path:
    return lab.spec.site_dir(site) / "dcctl-state" / "filesync" / "massar" / "documents" / "holding"


def held(lab, relative: str, site: str = "backup") -> list[Path]:
    """Versions of `relative` kept in the holding area (any day)."""
    root = holding_root(lab, site)
    if not root.exists():
        return []
    return sorted(p for day in root.iterdir() for p in day.glob(relative + "~*"))


def agent_config(lab, name: str, **filesync) -> str:
    data = yaml.safe_load(lab.spec.config_path.read_text())
    service = data["services"]["massar"]
    service["filesync"] = {"role_check_interval": 0.3, "receipt_interval": 0.5, **filesync}
    for site in service["sites"].values():
        site["agent"]["interval"] = 1.0
    path = lab.spec.root / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def start_agents(config: str, lab, sites=("rabat", "backup")) -> dict[str, AgentProcess]:
    agents = {site: AgentProcess(config, site, lab.spec.root / f"agent-{site}.log") for site in sites}
    for agent in agents.values():
        agent.start()
    return agents


def status_file(lab, site: str) -> Path:
    return lab.spec.site_dir(site) / "dcctl-state" / "filesync" / "massar" / "status.json"


def pushing(lab, site: str) -> bool:
    import json

    try:
        return json.loads(status_file(lab, site).read_text())["active"]
    except (OSError, ValueError, KeyError):
        return False
