"""Privilege drop and sd_notify, in real processes that bind UDP port 69 in a namespace.

The server here is a few lines of Python using the modules exactly as a server's start-up
will: resolve --user, bind, drop, notify READY=1, then answer datagrams (an echo that says
which uid answered). The test reads the process's real /proc/PID/status.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ptftpd.service import notify, privileges
from service.proc_status import status_fields
from support import Netns, Process, require_root, require_tool, wait_udp_bound

SERVER = """
import os, socket, sys
from ptftpd.service import notify, privileges
identity = privileges.resolve(sys.argv[1] or None)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 69))
try:
    privileges.drop(identity)
except privileges.PrivilegeError as exc:
    sys.exit(f"error: {exc}")
notify.ready("serving on 69")
sock.settimeout(60)
while True:
    data, peer = sock.recvfrom(100)
    sock.sendto(b"echo " + data + b" uid=" + str(os.getuid()).encode(), peer)
"""

CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
s.sendto(b"hello", ("127.0.0.1", 69))
print(s.recv(100).decode())
"""


def start(
    ns: Netns, tmp_path: Path, user: str, notify_path: str, prefix: tuple[str, ...] = ()
) -> Process:
    env = {**os.environ, "NOTIFY_SOCKET": notify_path}
    argv = ns.popen_argv([*prefix, sys.executable, "-c", SERVER, user])
    return Process(argv, tmp_path / "server.log", env=env)


def ask(ns: Netns) -> str:
    return ns.run(sys.executable, "-c", CLIENT, timeout=30).stdout.strip()


def test_root_binds_69_then_runs_as_nobody_with_nothing_left(
    netns: Netns, tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    listener, path = notify_socket
    nobody = pwd.getpwnam("nobody")
    server = start(netns, tmp_path, "nobody", path)
    try:
        message = listener.recv(4096).decode()
        assert message.split("\n") == ["READY=1", "STATUS=serving on 69"]
        # READY=1 came after the bind: the port is there the moment we hear it.
        wait_udp_bound(69, timeout=0.5, netns=netns.name)
        fields = status_fields(server.pid)
        uid = str(nobody.pw_uid)
        gid = str(nobody.pw_gid)
        assert fields["Uid"].split() == [uid] * 4
        assert fields["Gid"].split() == [gid] * 4
        assert int(fields["CapEff"], 16) == 0
        assert int(fields["CapPrm"], 16) == 0
        assert int(fields["CapAmb"], 16) == 0
        assert fields["NoNewPrivs"] == "1"
        assert fields["Groups"].split() in ([], [gid])
        assert ask(netns) == f"echo hello uid={nobody.pw_uid}"
    finally:
        server.stop()
    assert "Traceback" not in server.output()


def test_capability_only_start_binds_69_and_keeps_no_capability(
    netns: Netns, tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    """What systemd's AmbientCapabilities=CAP_NET_BIND_SERVICE with User= gives a server."""
    setpriv = require_tool("setpriv")
    listener, path = notify_socket
    nobody = pwd.getpwnam("nobody")
    as_nobody = (setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups")
    with_cap = (*as_nobody, "--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service")
    server = start(netns, tmp_path, "", path, prefix=with_cap)
    try:
        assert listener.recv(4096).decode().startswith("READY=1")
        fields = status_fields(server.pid)
        assert fields["Uid"].split() == [str(nobody.pw_uid)] * 4
        assert int(fields["CapEff"], 16) == 0
        assert int(fields["CapPrm"], 16) == 0
        assert int(fields["CapAmb"], 16) == 0
        assert ask(netns) == f"echo hello uid={nobody.pw_uid}"
    finally:
        server.stop()

    # The same start without the capability cannot bind 69: the capability is what did it.
    without = start(netns, tmp_path, "", path, prefix=as_nobody)
    assert without.proc.wait(30) != 0
    without.stop()
    assert "Permission denied" in without.output()


def test_user_without_root_is_a_one_line_error(netns: Netns, tmp_path: Path) -> None:
    setpriv = require_tool("setpriv")
    nobody = pwd.getpwnam("nobody")
    prefix = (
        setpriv,
        f"--reuid={nobody.pw_uid}",
        f"--regid={nobody.pw_gid}",
        "--clear-groups",
        "--inh-caps=+net_bind_service",
        "--ambient-caps=+net_bind_service",
    )
    server = start(netns, tmp_path, "daemon", "", prefix=prefix)
    assert server.proc.wait(30) == 1
    server.stop()
    assert server.output().strip() == "error: --user daemon needs the server to start as root"


@pytest.mark.parametrize(
    ("user", "group", "message"),
    [
        ("no-such-user-x", None, "--user: no such user 'no-such-user-x'"),
        ("nobody", "no-such-group-x", "--group: no such group 'no-such-group-x'"),
        ("4000000000", None, "--user: no such user '4000000000'"),
        (None, "nogroup", "--group needs --user"),
    ],
)
def test_unknown_user_or_group(user: str | None, group: str | None, message: str) -> None:
    with pytest.raises(privileges.PrivilegeError) as caught:
        privileges.resolve(user, group)
    assert str(caught.value) == message


def test_resolve_numbers_and_groups() -> None:
    nobody = pwd.getpwnam("nobody")
    identity = privileges.resolve(str(nobody.pw_uid))
    assert identity is not None
    assert (identity.user, identity.uid, identity.gid) == ("nobody", nobody.pw_uid, nobody.pw_gid)
    assert privileges.resolve(None) is None


def test_make_writable_gives_a_lease_dir_to_the_user(tmp_path: Path) -> None:
    require_root()
    identity = privileges.resolve("nobody")
    target = tmp_path / "state" / "leases"
    privileges.make_writable(identity, target)
    assert identity is not None
    assert (target.stat().st_uid, target.stat().st_gid) == (identity.uid, identity.gid)
    tmp_path.chmod(0o755)
    (tmp_path / "state").chmod(0o755)
    setpriv = require_tool("setpriv")
    subprocess.run(
        [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "touch", "leases.db"],
        cwd=target,
        check=True,
        timeout=30,
    )
    privileges.make_writable(None, tmp_path / "untouched")
    assert not (tmp_path / "untouched").exists()


def test_notify_abstract_socket(tmp_path: Path) -> None:
    name = f"ptftpd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(30)
        env = {**os.environ, "NOTIFY_SOCKET": "@" + name}
        code = "from ptftpd.service import notify; notify.ready(); notify.stopping()"
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
        assert listener.recv(100) == b"READY=1"
        assert listener.recv(100) == b"STOPPING=1"
        assert notify.notify("STATUS=x", environ={"NOTIFY_SOCKET": "@" + name})
        assert listener.recv(100) == b"STATUS=x"


def test_notify_reloading_carries_monotonic_usec(tmp_path: Path) -> None:
    path = tmp_path / "n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(30)
        env = {**os.environ, "NOTIFY_SOCKET": str(path)}
        code = "from ptftpd.service import notify; notify.reloading()"
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
        first, second = listener.recv(100).decode().split("\n")
        assert first == "RELOADING=1"
        assert second.startswith("MONOTONIC_USEC=")
        assert int(second.split("=")[1]) > 0


def test_notify_without_socket_is_a_no_op() -> None:
    assert notify.notify("READY=1", environ={}) is False
    assert notify.notify("READY=1", environ={"NOTIFY_SOCKET": "vsock:2:1"}) is False
    assert notify.notify("READY=1", environ={"NOTIFY_SOCKET": "/nonexistent/sock"}) is False
