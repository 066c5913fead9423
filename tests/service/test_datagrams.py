"""The one UDP endpoint (`ptftpd.datagrams`): one bind wording for every server, a send
that never raises, one reply delay."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from ptftpd import datagrams
from ptftpd.errors import StartError

HINT = "run as root"


def test_a_taken_port_is_one_line() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        with pytest.raises(StartError) as caught:
            datagrams.udp_socket(socket.AF_INET, ("127.0.0.1", port), where="127.0.0.1", hint=HINT)
    assert str(caught.value) == f"UDP port {port} on 127.0.0.1 is already in use"
    assert caught.value.status == 1


def test_no_such_interface_is_one_line() -> None:
    with pytest.raises(StartError, match=r"^no such interface: nosuchif0$"):
        datagrams.udp_socket(
            socket.AF_INET, ("0.0.0.0", 0), where="nosuchif0", hint=HINT, interface="nosuchif0"
        )


def test_a_bound_socket_is_non_blocking_and_never_shares_its_port() -> None:
    sock = datagrams.udp_socket(socket.AF_INET, ("127.0.0.1", 0), where="127.0.0.1", hint=HINT)
    with sock:
        assert not sock.getblocking()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0


def test_send_errors_cost_one_datagram(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("ptftpd.test")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, caplog.at_level(logging.DEBUG):
        datagrams.send(sock, b"x", ("::1", 9), log)  # an IPv6 peer on an IPv4 socket
    assert "cannot send to ::1" in caplog.text


def test_the_reply_delay() -> None:
    done: list[float] = []

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        datagrams.after(0.2, loop, lambda: done.append(loop.time() - start))
        datagrams.after(0, loop, done.append, -1.0)  # no delay: at once
        assert done == [-1.0]
        await asyncio.sleep(0.4)
        return start

    asyncio.run(main())
    assert done[0] == -1.0 and 0.15 <= done[1] < 0.4
