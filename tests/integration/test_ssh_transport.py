"""SshTransport against a real, private sshd on 127.0.0.1."""
import os
import pwd
import socket
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from dcctl.config.schema import SshTransportConfig
from dcctl.errors import CommandTimeout, DcctlError, HostKeyError, LabError, UnreachableError
from dcctl.lab.sshd import SSHD, PrivateSshd, ensure_client_key
from dcctl.transport.ssh import SshTransport
from tests.conftest import unprivileged_user

pytestmark = pytest.mark.skipif(not os.path.exists(SSHD), reason="openssh-server is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SshdLab:
    sshd: PrivateSshd
    dir: Path
    config: SshTransportConfig


@pytest.fixture
def sshd_lab(open_tmp):
    key = ensure_client_key(open_tmp / "client")
    sshd = PrivateSshd(open_tmp / "sshd", free_port(), unprivileged_user(), open_tmp / "client" / "authorized_keys")
    sshd.start()
    known_hosts = open_tmp / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_entry() + "\n")
    config = SshTransportConfig(type="ssh", host="127.0.0.1", user=unprivileged_user(), known_hosts=str(known_hosts),
                                port=sshd.port, key_file=str(key), connect_timeout=5, command_timeout=30)
    try:
        yield SshdLab(sshd, open_tmp, config)
    finally:
        sshd.stop()


@pytest.fixture
def ssh(sshd_lab):
    transport = SshTransport("dc2", sshd_lab.config)
    yield transport
    transport.close()


def test_run_returns_output_rc_and_stderr(ssh, sshd_lab):
    assert ssh.description == f"ssh {unprivileged_user()}@127.0.0.1:{sshd_lab.sshd.port}"
    assert ssh.run(["id", "-un"]).check().stdout == unprivileged_user() + "\n"
    assert ssh.run(["sh", "-c", "exit 3"]).rc == 3
    failed = ssh.run(["sh", "-c", "echo oops >&2; exit 1"])
    assert (failed.rc, failed.stdout, failed.stderr) == (1, "", "oops\n")
    # argv is quoted, never re-split by the remote shell
    assert ssh.run(["echo", "a  b", "$HOME", ";", "x"]).stdout == "a  b $HOME ; x\n"
    assert ssh.run(["sh", "-c", 'echo "$FOO"'], env={"FOO": "x y"}).stdout == "x y\n"


def test_input_round_trip(ssh):
    assert ssh.run(["cat"], input="hello\nworld").stdout == "hello\nworld"
    big = b"z" * (3 * 1024 * 1024)  # larger than the SSH windows both ways: needs concurrent write and read
    assert len(ssh.run(["cat"], input=big).stdout) == len(big)


def test_large_stdout_and_stderr_do_not_deadlock(ssh):
    result = ssh.run(["sh", "-c", "head -c 2097152 /dev/zero | tr '\\0' x; head -c 1048576 /dev/zero | tr '\\0' y >&2"])
    assert result.rc == 0
    assert result.stdout == "x" * 2097152
    assert result.stderr == "y" * 1048576


def test_timeout_raises_and_kills_the_remote_command(ssh):
    with pytest.raises(CommandTimeout) as info:
        ssh.run(["sleep", "29.5"], timeout=0.5)
    assert "sleep 29.5" in str(info.value) and "dc2" in str(info.value) and "0.5 s" in str(info.value)
    # the connection still works, and the remote sleep was signalled rather than left running
    assert ssh.run(["pgrep", "-f", "sleep 29.5"]).rc == 1


def test_connection_is_reused_and_reopened_after_a_drop(ssh):
    ssh.connect()
    first = ssh._client.get_transport()
    ssh.run(["true"])
    ssh.read_file("/etc/hostname")
    ssh.run(["true"])
    assert ssh._client.get_transport() is first
    first.close()  # the connection drops under us
    assert ssh.run(["echo", "back"]).stdout == "back\n"
    assert ssh._client.get_transport() is not first


def test_write_then_read_file(ssh, sshd_lab):
    files = sshd_lab.dir / "files"
    files.mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam(unprivileged_user())
        os.chown(files, user.pw_uid, user.pw_gid)
    path = str(files / "a.conf")
    ssh.write_file(path, b"first\n", mode=0o640)
    assert ssh.read_file(path) == b"first\n"
    assert ssh.run(["stat", "-c", "%a", path]).stdout.strip() == "640"
    data = os.urandom(300_000)
    ssh.write_file(path, data)
    assert ssh.read_file(path) == data
    assert ssh.run(["stat", "-c", "%a", path]).stdout.strip() == "600"
    assert os.listdir(files) == ["a.conf"]  # no temp file left behind

    with pytest.raises(DcctlError, match=r"missing\.conf on site dc2: no such file"):
        ssh.read_file(str(files / "missing.conf"))
    with pytest.raises(DcctlError, match="no such file"):
        ssh.write_file(str(files / "nodir" / "x"), b"x")


def test_unknown_host_key_is_refused(sshd_lab):
    empty = sshd_lab.dir / "empty_known_hosts"
    empty.write_text("")
    transport = SshTransport("dc2", replace(sshd_lab.config, known_hosts=str(empty)))
    with pytest.raises(HostKeyError) as info:
        transport.run(["true"])
    message = str(info.value)
    assert sshd_lab.sshd.host_key_fingerprint() in message
    assert f"127.0.0.1:{sshd_lab.sshd.port}" in message and "ssh-ed25519" in message and "dc2" in message
    assert f"ssh-keyscan -p {sshd_lab.sshd.port} -t ed25519 127.0.0.1 >> {empty}" in info.value.hint


def test_changed_host_key_is_refused(sshd_lab):
    other = sshd_lab.dir / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, blob = other.with_suffix(".pub").read_text().split()[:2]
    wrong = sshd_lab.dir / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd_lab.sshd.port} {kind} {blob}\n")
    with pytest.raises(HostKeyError) as info:
        SshTransport("dc2", replace(sshd_lab.config, known_hosts=str(wrong))).connect()
    message = str(info.value)
    assert "CHANGED" in message and "attack" in message
    assert sshd_lab.sshd.host_key_fingerprint() in message


def test_wrong_client_key_fails_authentication(sshd_lab):
    stranger = ensure_client_key(sshd_lab.dir / "stranger")
    with pytest.raises(UnreachableError, match=f"authentication failed.*{stranger}"):
        SshTransport("dc2", replace(sshd_lab.config, key_file=str(stranger))).connect()
    with pytest.raises(UnreachableError, match="cannot read key file"):
        SshTransport("dc2", replace(sshd_lab.config, key_file=str(sshd_lab.dir / "nokey"))).connect()


def test_closed_port_is_unreachable(sshd_lab):
    port = free_port()
    with pytest.raises(UnreachableError) as info:
        SshTransport("dc2", replace(sshd_lab.config, port=port)).connect()
    assert f"@127.0.0.1:{port}" in str(info.value) and "refused" in str(info.value)


def test_tarpit_times_out(sshd_lab):
    with socket.socket() as tarpit:  # completes the TCP handshake, never sends an SSH banner
        tarpit.bind(("127.0.0.1", 0))
        tarpit.listen(5)
        port = tarpit.getsockname()[1]
        with pytest.raises(UnreachableError) as info:
            SshTransport("dc2", replace(sshd_lab.config, port=port, connect_timeout=1)).connect()
    assert f"127.0.0.1:{port}" in str(info.value) and "timed out" in str(info.value)


def test_stop_closes_the_port(sshd_lab):
    pid = sshd_lab.sshd.pid
    assert pid and sshd_lab.sshd.running()
    sshd_lab.sshd.stop()
    assert not sshd_lab.sshd.running() and sshd_lab.sshd.pid is None
    with pytest.raises(UnreachableError, match="refused"):
        SshTransport("dc2", sshd_lab.config).connect()


def test_sshd_start_fails_clearly_when_the_port_is_taken(open_tmp):
    ensure_client_key(open_tmp / "client")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: only sshd's own bind() can tell
        sshd = PrivateSshd(open_tmp / "sshd", taken.getsockname()[1], unprivileged_user(),
                           open_tmp / "client" / "authorized_keys")
        with pytest.raises(LabError, match="Address already in use"):
            sshd.start()
        taken.listen()
        with pytest.raises(LabError, match="already in use"):
            sshd.start()
    assert not sshd.running()


@pytest.mark.parametrize("kind", ["ssh", "local"])
def test_exists_and_compare_and_remove_agree_over_both_transports(kind, ssh, sshd_lab):
    """The native ways (SFTP stat; the local transport's own flock) answer as the commands do."""
    from dcctl.transport.local import LocalTransport

    transport = ssh if kind == "ssh" else LocalTransport("dc2", run_as=unprivileged_user())
    files = sshd_lab.dir / f"guarded-{kind}"
    files.mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam(unprivileged_user())
        os.chown(files, user.pw_uid, user.pw_gid)
    path = str(files / "x.lock")
    assert transport.exists(str(files)) and not transport.exists(path)
    assert transport.create_exclusive(path, b"mine")
    assert transport.exists(path)
    assert not transport.remove_if_same(path, b"theirs", str(files), wait=5)
    assert transport.exists(path)
    assert transport.remove_if_same(path, b"mine", str(files), wait=5)
    assert not transport.exists(path)
    assert not transport.remove_if_same(path, b"mine", str(files), wait=5)  # already gone


def test_compare_and_remove_waits_for_the_guard_then_gives_up(open_tmp):
    import signal
    import time

    from dcctl.errors import ToolError
    from dcctl.transport.local import LocalTransport

    guard = open_tmp / "guard"
    guard.mkdir()
    (guard / "x.lock").write_bytes(b"mine")
    holder = subprocess.Popen(["flock", str(guard), "sleep", "30"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while subprocess.run(["flock", "-n", str(guard), "true"]).returncode == 0:
            assert time.monotonic() < deadline, "flock(1) never took the guard"
            time.sleep(0.01)
        with pytest.raises(ToolError, match="stayed flocked for 1 s"):
            LocalTransport("dc2").remove_if_same(str(guard / "x.lock"), b"mine", str(guard), wait=1)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # flock(1) and the sleep that holds the lock with it
        holder.wait()
    assert LocalTransport("dc2").remove_if_same(str(guard / "x.lock"), b"mine", str(guard), wait=1)
