"""The SSH transport (paramiko): one connection per site, reused by every command and file transfer.

Host keys come only from the site's known_hosts file; an unknown or changed key is refused.
"""
from __future__ import annotations

import base64
import errno
import hashlib
import posixpath
import secrets
import select
import shlex
import socket
import threading
import time
from typing import Sequence

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST

from dcctl.config.schema import SshTransportConfig
from dcctl.errors import CommandTimeout, DcctlError, HostKeyError, UnreachableError
from dcctl.transport.base import Completed, OutputCallback, Transport, command_label

_CHUNK = 65536


def fingerprint(key: paramiko.PKey) -> str:
    """SHA256 fingerprint as OpenSSH prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def _keyscan_type(key: paramiko.PKey) -> str:
    name = key.get_name()
    return "ecdsa" if name.startswith("ecdsa") else name.removeprefix("ssh-")


class _RejectUnknownHost(paramiko.MissingHostKeyPolicy):
    def __init__(self, transport: "SshTransport"):
        self.t = transport

    def missing_host_key(self, client, hostname, key) -> None:
        c = self.t.config
        raise HostKeyError(
            f"site {self.t.site}: host key of {c.host}:{c.port} is not in {c.known_hosts} "
            f"(offered {key.get_name()} {fingerprint(key)})",
            hint=f"verify that fingerprint out of band (on the host: ssh-keygen -lf /etc/ssh/ssh_host_"
                 f"{_keyscan_type(key)}_key.pub), then add it: ssh-keyscan -p {c.port} -t {_keyscan_type(key)} "
                 f"{c.host} >> {c.known_hosts}")


class SshTransport(Transport):
    def __init__(self, site: str, config: SshTransportConfig):
        self.site = site
        self.config = config
        self.description = f"ssh {config.user}@{config.host}:{config.port}"
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.Lock()

    # -- connection ---------------------------------------------------------------------------

    def connect(self) -> None:
        self._transport()

    def _transport(self) -> paramiko.Transport:
        """The live paramiko Transport, (re)connecting if there is none or it dropped."""
        with self._lock:
            t = self._client.get_transport() if self._client else None
            if t is not None and t.is_active():
                return t
            self.close()
            self._client = self._open_client()
            return self._client.get_transport()

    def _open_client(self) -> paramiko.SSHClient:
        c = self.config
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(c.known_hosts)
        except OSError as exc:
            raise HostKeyError(f"site {self.site}: cannot read known_hosts file {c.known_hosts}: "
                               f"{exc.strerror or exc}",
                               hint=f"create it with the host's verified key, e.g. ssh-keyscan -p {c.port} "
                                    f"-t ed25519 {c.host} >> {c.known_hosts}") from None
        except paramiko.hostkeys.InvalidHostKey as exc:
            raise HostKeyError(f"site {self.site}: known_hosts file {c.known_hosts} has a malformed line"
                               f"{_line_number(c.known_hosts, exc.line)}: {_clip(exc.line)}",
                               hint=f"fix or remove that line (ssh-keygen -l -f {c.known_hosts} shows which "
                                    f"lines it can read), then add the host's verified key") from None
        except UnicodeDecodeError:
            raise HostKeyError(f"site {self.site}: known_hosts file {c.known_hosts} is not UTF-8 text",
                               hint=f"check that {c.known_hosts} is a known_hosts file (ssh-keygen -l -f "
                                    f"{c.known_hosts})") from None
        client.set_missing_host_key_policy(_RejectUnknownHost(self))
        try:
            # Our own socket, with Nagle off: each small request/reply (exec, SFTP) otherwise waits
            # for the peer's delayed ACK, about 40 ms a round trip.
            sock = socket.create_connection((c.host, c.port), timeout=c.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.connect(c.host, port=c.port, username=c.user, key_filename=c.key_file, sock=sock,
                           allow_agent=c.use_agent, look_for_keys=False, timeout=c.connect_timeout,
                           banner_timeout=c.connect_timeout, auth_timeout=c.connect_timeout)
            if c.keepalive_interval > 0:
                client.get_transport().set_keepalive(c.keepalive_interval)
            return client
        except DcctlError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"site {self.site}: HOST KEY CHANGED for {c.host}:{c.port}: {c.known_hosts} expects "
                f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}, the host offered "
                f"{exc.key.get_name()} {fingerprint(exc.key)}; this may be a man-in-the-middle attack",
                hint=f"do not connect until the new key is verified out of band; if the host was legitimately "
                     f"reinstalled, ssh-keygen -R '[{c.host}]:{c.port}' -f {c.known_hosts} and add the new key "
                     f"with ssh-keyscan -p {c.port} -t {_keyscan_type(exc.key)} {c.host}") from None
        except Exception as exc:  # paramiko and socket raise many unrelated types; all mean "unreachable"
            t = client.get_transport()
            if str(exc) == "No existing session" and t is not None and t.get_exception() is not None:
                exc = t.get_exception()  # the handshake failed in paramiko's thread; that is the real cause
            client.close()
            raise UnreachableError(f"site {self.site}: cannot connect to {c.user}@{c.host}:{c.port}: "
                                   f"{self._cause(exc)}", hint=self._hint(exc)) from None

    def _cause(self, exc: Exception) -> str:
        c = self.config
        if isinstance(exc, paramiko.PasswordRequiredException):
            return f"key file {c.key_file} is encrypted; use a key without passphrase, or an ssh-agent (use_agent)"
        if isinstance(exc, paramiko.AuthenticationException):
            what = f"key file {c.key_file}" if c.key_file else "no key file"
            return (f"authentication failed for user {c.user} ({what}"
                    f"{', ssh-agent keys' if c.use_agent else ''}): {exc}")
        if isinstance(exc, OSError) and exc.filename and exc.filename == c.key_file:
            return f"cannot read key file {c.key_file}: {exc.strerror}"
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve host name {c.host!r} ({exc.strerror})"
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            exc = next(iter(exc.errors.values()))  # one error per address tried; they rarely differ
        if getattr(exc, "errno", None) == errno.ECONNREFUSED:
            return "connection refused (is sshd running and listening on that port?)"
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return f"TCP connect timed out after {c.connect_timeout:g} s"
        text = str(exc)
        if "banner" in text:
            if isinstance(exc.__context__, EOFError):
                return "the server closed the connection before sending an SSH banner"
            return f"timed out after {c.connect_timeout:g} s waiting for the SSH banner (is that port an SSH server?)"
        if text == "No existing session":  # paramiko's start_client returns silently when its timeout passes
            return f"SSH handshake timed out after {c.connect_timeout:g} s"
        if "No authentication methods available" in text:
            return "no authentication method: set key_file or use_agent"
        if isinstance(exc, paramiko.SSHException) and ("not a valid" in text or "encrypted" in text.lower()
                                                       or "private key" in text.lower()):
            return f"cannot use key file {c.key_file}: {text}"
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

    def _hint(self, exc: Exception) -> str | None:
        if isinstance(exc, paramiko.AuthenticationException):
            return (f"check that the public key of {self.config.key_file} is in ~{self.config.user}/.ssh/"
                    f"authorized_keys on {self.config.host}")
        return None

    def close(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:
                pass
        if self._client is not None:
            self._client.close()
        self._sftp = self._client = None

    # -- commands -----------------------------------------------------------------------------

    def run(self, argv: Sequence[str], *, timeout: float | None = None, input: str | bytes | None = None,
            env: dict[str, str] | None = None, on_stderr: OutputCallback | None = None) -> Completed:
        argv = tuple(argv)
        timeout = self.config.command_timeout if timeout is None else timeout
        prefix = ["env", *(f"{k}={v}" for k, v in env.items())] if env else []
        command = shlex.join([*prefix, *argv])
        data = input.encode() if isinstance(input, str) else input
        chan = self._open_channel()
        try:
            chan.exec_command(command)
            if data is not None:
                # A writer thread: feeding stdin while reading stdout is what avoids the deadlock when
                # both directions exceed the SSH window (e.g. a big input through `cat`).
                threading.Thread(target=_feed, args=(chan, data), daemon=True).start()
            else:
                chan.shutdown_write()
            rc, out, err = self._collect(chan, time.monotonic() + timeout, on_stderr)
            if rc is None:
                _signal(chan, "KILL")  # before the close: the request needs the open channel
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise UnreachableError(f"site {self.site}: lost the SSH connection to {self.config.host}:"
                                   f"{self.config.port} while running {command_label(argv)}: {str(exc) or type(exc).__name__}"
                                   ) from None
        finally:
            chan.close()
        if rc is None:
            raise CommandTimeout(f"{command_label(argv)} did not finish within {timeout:g} s on site "
                                 f"{self.site} ({self.description})")
        return Completed(argv, rc, out.decode(errors="replace"), err.decode(errors="replace"))

    def _open_channel(self) -> paramiko.Channel:
        for attempt in (1, 2):
            t = self._transport()
            try:
                return t.open_session(timeout=self.config.connect_timeout)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                # The connection may have died since the last use; nothing ran yet, so retrying is safe.
                if attempt == 2 or t.is_active():
                    raise UnreachableError(f"site {self.site}: cannot open an SSH channel to "
                                           f"{self.config.host}:{self.config.port}: {exc}") from None
                self.close()
        raise AssertionError("unreachable")

    @staticmethod
    def _collect(chan: paramiko.Channel, deadline: float,
                 on_stderr: OutputCallback | None = None) -> tuple[int | None, bytes, bytes]:
        """Read stdout and stderr until EOF and the exit status arrive; rc None means the deadline passed."""
        out, err = bytearray(), bytearray()
        while True:
            busy = False
            if chan.recv_ready():
                out += chan.recv(_CHUNK)
                busy = True
            if chan.recv_stderr_ready():
                chunk = chan.recv_stderr(_CHUNK)
                err += chunk
                if on_stderr:
                    on_stderr(chunk.decode(errors="replace"))
                busy = True
            if busy:
                continue
            if (chan.eof_received or chan.closed) and chan.exit_status_ready():
                return chan.recv_exit_status(), bytes(out), bytes(err)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, bytes(out), bytes(err)
            if chan.eof_received or chan.closed:
                chan.status_event.wait(remaining)  # the pipe stays readable after EOF: don't spin on it
            else:
                select.select([chan], [], [], remaining)

    # -- files --------------------------------------------------------------------------------

    def _sftp_client(self) -> paramiko.SFTPClient:
        self._transport()
        if self._sftp is None or self._sftp.get_channel().closed:
            try:
                self._sftp = self._client.open_sftp()
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise UnreachableError(f"site {self.site}: cannot open SFTP on {self.description}: {exc}") from None
        return self._sftp

    def _file_error(self, verb: str, path: str, exc: Exception) -> DcctlError:
        if isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) == errno.ENOENT:
            return DcctlError(f"cannot {verb} {path} on site {self.site}: no such file or directory")
        if isinstance(exc, PermissionError) or getattr(exc, "errno", None) == errno.EACCES:
            return DcctlError(f"cannot {verb} {path} on site {self.site}: permission denied for "
                              f"{self.config.user}")
        if isinstance(exc, (paramiko.SSHException, EOFError)):
            return UnreachableError(f"site {self.site}: SSH connection lost while trying to {verb} {path}: {exc}")
        return DcctlError(f"cannot {verb} {path} on site {self.site}: {exc}")

    def read_file(self, path: str) -> bytes:
        sftp = self._sftp_client()
        try:
            with sftp.open(path, "rb") as fh:
                fh.prefetch()
                return fh.read()
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise self._file_error("read", path, exc) from None

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        sftp = self._sftp_client()
        tmp = posixpath.join(posixpath.dirname(path) or ".",
                             f".dcctl-{posixpath.basename(path)}.{secrets.token_hex(4)}.tmp")
        try:
            with sftp.open(tmp, "wb") as fh:
                fh.chmod(mode)  # before any byte is written: the data may be a secret
                fh.set_pipelined(True)
                fh.write(data)
            sftp.posix_rename(tmp, path)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            try:
                sftp.remove(tmp)
            except Exception:
                pass
            raise self._file_error("write", path, exc) from None

    def exists(self, path: str) -> bool:
        sftp = self._sftp_client()
        try:
            sftp.stat(path)
            return True
        except (FileNotFoundError, PermissionError):
            return False  # as `test -e` answers
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise self._file_error("look for", path, exc) from None

    def create_exclusive(self, path: str, data: bytes, mode: int = 0o644) -> bool:
        # SFTP's plain RENAME (unlike posix-rename@openssh.com) fails when the target exists;
        # OpenSSH's sftp-server does it with link(), so the whole file appears at once or not at all.
        sftp = self._sftp_client()
        tmp = posixpath.join(posixpath.dirname(path) or ".",
                             f".dcctl-{posixpath.basename(path)}.{secrets.token_hex(4)}.excl")
        created = False
        try:
            with sftp.open(tmp, "wb") as fh:
                fh.chmod(mode)
                fh.write(data)
            try:
                sftp.rename(tmp, path)
                created = True
                return True
            except OSError:
                if self._exists(sftp, path):
                    return False  # the server's generic "Failure": the target was there
                raise
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise self._file_error("create", path, exc) from None
        finally:
            if not created:
                try:
                    sftp.remove(tmp)
                except Exception:
                    pass  # never written, or the connection is gone

    @staticmethod
    def _exists(sftp: paramiko.SFTPClient, path: str) -> bool:
        try:
            sftp.lstat(path)
            return True
        except FileNotFoundError:
            return False


def _line_number(path: str, line: str) -> str:
    """` (line N)` where `line` stands in the file, or "" when it cannot be found again."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, text in enumerate(handle, start=1):
                if text.strip() == line.strip():
                    return f" (line {number})"
    except OSError:
        pass
    return ""


def _clip(text: str, limit: int = 80) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _feed(chan: paramiko.Channel, data: bytes) -> None:
    try:
        chan.sendall(data)
        chan.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        pass  # the command exited or timed out before reading all its input; run() reports that


def _signal(chan: paramiko.Channel, name: str) -> None:
    """Best effort: ask sshd (OpenSSH >= 7.9) to signal the command's process group.

    Closing the channel alone leaves a command without a tty running on the host. paramiko has no
    public API for the RFC 4254 "signal" request, so we send it the way Channel's own methods do.
    """
    m = paramiko.Message()
    m.add_byte(cMSG_CHANNEL_REQUEST)
    m.add_int(chan.remote_chanid)
    m.add_string("signal")
    m.add_boolean(False)
    m.add_string(name)
    try:
        chan.transport._send_user_message(m)
    except Exception:
        pass
