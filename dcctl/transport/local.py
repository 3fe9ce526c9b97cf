"""The local transport: subprocess on this machine, argv only.

When dcctl runs as root and the site names `run_as`, commands run as that user (PostgreSQL
refuses to run as root) and files written for the site are owned by it.
"""
from __future__ import annotations

import fcntl
import os
import pwd
import signal
import subprocess
import tempfile
import threading
import time
from typing import Sequence

from dcctl.errors import CommandTimeout, DcctlError, ToolError
from dcctl.transport.base import Completed, OutputCallback, Transport, command_label, guard_busy


class LocalTransport(Transport):
    def __init__(self, site: str, run_as: str | None = None, default_timeout: float = 120.0):
        self.site = site
        self.default_timeout = default_timeout
        self.user = pwd.getpwnam(run_as) if run_as and os.geteuid() == 0 and run_as != "root" else None
        self.description = f"local (as {self.user.pw_name})" if self.user else "local"

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = dict(os.environ)
        if self.user:
            env.update(HOME=self.user.pw_dir, USER=self.user.pw_name, LOGNAME=self.user.pw_name)
        env.setdefault("LC_ALL", "C.UTF-8")
        env.update(extra or {})
        return env

    def popen(self, argv: Sequence[str], *, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        """Start a long-running process (the caller reads its pipes), in its own process group."""
        user_args = {}
        if self.user:
            user_args = dict(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        try:
            return subprocess.Popen(list(argv), env=self._env(env), cwd=self.user.pw_dir if self.user else None,
                                    start_new_session=True, **user_args, **kwargs)
        except FileNotFoundError:
            raise ToolError(f"{argv[0]}: command not found on site {self.site}",
                            hint="check bin_dir in the config and that the tool is installed") from None

    def run(self, argv: Sequence[str], *, timeout: float | None = None, input: str | bytes | None = None,
            env: dict[str, str] | None = None, on_stderr: OutputCallback | None = None) -> Completed:
        timeout = self.default_timeout if timeout is None else timeout
        data = input.encode() if isinstance(input, str) else input
        proc = self.popen(argv, env=env, stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            if on_stderr is None:
                out, err = proc.communicate(data, timeout=timeout)
            else:
                out, err = _communicate_streaming(proc, data, timeout, on_stderr)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise CommandTimeout(f"{command_label(argv)} did not finish within {timeout:g} s on site {self.site}") from None
        except BaseException:
            _kill_group(proc)
            raise
        return Completed(tuple(argv), proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    def read_file(self, path: str) -> bytes:
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            raise DcctlError(f"cannot read {path} on site {self.site}: no such file or directory") from None
        except OSError as exc:
            raise DcctlError(f"cannot read {path} on site {self.site}: {exc.strerror}") from None

    def _write_temp(self, directory: str, data: bytes, mode: int, prefix: str) -> str:
        """A new file in `directory` holding `data`, flushed to disk, with its mode and owner set."""
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            if self.user:
                os.chown(tmp, self.user.pw_uid, self.user.pw_gid)
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        directory = os.path.dirname(path) or "."
        tmp = self._write_temp(directory, data, mode, ".dcctl-")
        try:
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def create_exclusive(self, path: str, data: bytes, mode: int = 0o644) -> bool:
        # Written in full under a temporary name, then hard-linked to `path`: link() fails if
        # `path` exists (as O_EXCL does) and never shows a half-written file, even after a kill.
        directory = os.path.dirname(path) or "."
        tmp = self._write_temp(directory, data, mode, ".dcctl-excl-")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        _fsync_dir(directory)
        return True

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def remove_if_same(self, path: str, data: bytes, guard: str, wait: float) -> bool:
        # The same flock as flock(1) on the directory takes at a site, without starting a process.
        fd = os.open(guard, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if not _flock_within(fd, wait):
                raise guard_busy(self.site, guard, wait, path)
            try:
                with open(path, "rb") as fh:
                    if fh.read() != data:
                        return False
            except FileNotFoundError:
                return False
            os.unlink(path)
            return True
        finally:
            os.close(fd)  # releases the flock


def _flock_within(fd: int, wait: float) -> bool:
    end = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= end:
                return False
            time.sleep(0.01)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _communicate_streaming(proc: subprocess.Popen, data: bytes | None, timeout: float,
                           on_stderr: OutputCallback) -> tuple[bytes, bytes]:
    """Like communicate(), but hands stderr to on_stderr as it arrives."""
    out, err = bytearray(), bytearray()

    def read_stdout() -> None:
        out.extend(proc.stdout.read())

    def read_stderr() -> None:
        for chunk in iter(lambda: os.read(proc.stderr.fileno(), 65536), b""):
            err.extend(chunk)
            on_stderr(chunk.decode(errors="replace"))

    readers = [threading.Thread(target=read_stdout, daemon=True), threading.Thread(target=read_stderr, daemon=True)]
    for reader in readers:
        reader.start()
    if data is not None:
        proc.stdin.write(data)
        proc.stdin.close()
    proc.wait(timeout=timeout)
    for reader in readers:
        reader.join(timeout=5)
    return bytes(out), bytes(err)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
