"""Fixtures shared by the service tests: a namespace of their own and a notify socket."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import Netns, require_root, require_tool


@pytest.fixture
def netns() -> Iterator[Netns]:
    require_root()
    require_tool("ip")
    ns = Netns("psv")
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket the way systemd offers it: a path any service user may send to."""
    folder = Path(tempfile.mkdtemp(prefix="ptftpd-notify-"))
    folder.chmod(0o755)
    path = folder / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    path.chmod(0o666)
    sock.settimeout(60)
    try:
        yield sock, str(path)
    finally:
        sock.close()
        shutil.rmtree(folder)
