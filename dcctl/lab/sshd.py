"""A private OpenSSH server for the lab and the tests: own config, host key, port and pid file.

As root, sshd switches to `login_user` after public-key authentication; otherwise it runs as, and
only logs in, the current user. Only subprocess and files here (no paramiko).
"""
from __future__ import annotations

import base64
import hashlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from dcctl.errors import LabError

SSHD = "/usr/sbin/sshd"


def ensure_client_key(ssh_dir: Path) -> Path:
    """Create ssh_dir/id_ed25519 (no passphrase) and an authorized_keys holding its public key."""
    ssh_dir.mkdir(parents=True, exist_ok=True)
    ssh_dir.chmod(0o755)  # sshd reads authorized_keys as the login user, who must traverse this dir
    key = ssh_dir / "id_ed25519"
    if not key.exists():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dcctl-lab-client", "-f", str(key)])
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text(key.with_suffix(".pub").read_text())
    authorized.chmod(0o644)
    return key


class PrivateSshd:
    def __init__(self, state_dir: Path, port: int, login_user: str, authorized_keys: Path, host: str = "127.0.0.1",
                 exec_prefix: list[str] | None = None):
        self.state_dir = Path(state_dir).absolute()
        self.exec_prefix = list(exec_prefix or [])  # e.g. `ip netns exec NS`: where sshd (and its logins) run
        self.port = port
        self.login_user = login_user
        self.authorized_keys = Path(authorized_keys).absolute()
        self.host = host
        self.config_path = self.state_dir / "sshd_config"
        self.host_key = self.state_dir / "ssh_host_ed25519_key"
        self.pid_file = self.state_dir / "sshd.pid"
        self.log_file = self.state_dir / "sshd.log"

    def prepare(self) -> None:
        """Write the host key and config (idempotent) and check the config with `sshd -t`."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dcctl-lab-host", "-f", str(self.host_key)])
        root = os.geteuid() == 0
        # UsePAM yes as root: without PAM, OpenSSH refuses accounts whose shadow password is locked ('!'),
        # like the postgres user's; PAM's account check does not. Not root: PAM cannot work anyway.
        self.config_path.write_text(f"""\
Port {self.port}
ListenAddress {self.host}
HostKey {self.host_key}
PidFile {self.pid_file}
AuthorizedKeysFile {self.authorized_keys}
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM {"yes" if root else "no"}
StrictModes no
AllowUsers {self.login_user}
PermitRootLogin no
DisableForwarding yes
PrintMotd no
Subsystem sftp internal-sftp
LogLevel ERROR
""")
        if root and not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation chroot
        check = subprocess.run([SSHD, "-t", "-f", str(self.config_path)], capture_output=True, text=True)
        if check.returncode != 0:
            raise LabError(f"sshd rejects its config {self.config_path}: {(check.stderr or check.stdout).strip()}")

    @property
    def pid(self) -> int | None:
        """The pid of our listening sshd, or None when it is not running."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_ours(pid) else None

    def running(self) -> bool:
        return self.pid is not None

    def start(self, wait: float = 5.0) -> int:
        if (pid := self.pid) is not None:
            return pid
        self.prepare()
        if _accepts(self.host, self.port):
            raise LabError(f"cannot start sshd on {self.host}:{self.port}: the port is already in use")
        self.pid_file.unlink(missing_ok=True)
        log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        # sshd daemonizes at once and binds afterwards, so success is "pid file written and port open"
        proc = subprocess.run([*self.exec_prefix, SSHD, "-f", str(self.config_path), "-E", str(self.log_file)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"sshd failed to start on {self.host}:{self.port}: "
                           f"{(proc.stderr or proc.stdout).strip() or self._log_tail(log_start)}")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pid = self.pid
            if pid is not None and _accepts(self.host, self.port):
                return pid
            if pid is None and self._log_tail(log_start):
                break  # at LogLevel ERROR, output before the pid file means it failed (e.g. cannot bind)
            time.sleep(0.05)
        raise LabError(f"sshd did not come up on {self.host}:{self.port} within {wait:g} s: "
                       f"{self._log_tail(log_start) or 'no log output'}", detail=str(self.log_file))

    def stop(self, wait: float = 5.0) -> None:
        """SIGTERM our sshd (checked via /proc to be ours) and wait until it is gone."""
        pid = self.pid
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while self._is_ours(pid):
            if time.monotonic() > deadline:
                raise LabError(f"sshd (pid {pid}) did not stop within {wait:g} s")
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    def _is_ours(self, pid: int) -> bool:
        """Alive (not a zombie) and an sshd started with our config (sshd rewrites its title but keeps argv in it)."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z" and "sshd" in cmdline and str(self.config_path) in cmdline

    def _host_key_pub(self) -> tuple[str, str]:
        kind, blob = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return kind, blob

    def known_hosts_entry(self) -> str:
        kind, blob = self._host_key_pub()
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{name} {kind} {blob}"

    def host_key_fingerprint(self) -> str:
        """SHA256 fingerprint as `ssh-keygen -l` prints it."""
        digest = hashlib.sha256(base64.b64decode(self._host_key_pub()[1])).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def _log_tail(self, start: int = 0, lines: int = 5) -> str:
        try:
            with open(self.log_file, "rb") as fh:
                fh.seek(start)
                text = fh.read().decode(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"{argv[0]} failed: {(proc.stderr or proc.stdout).strip()}")
