"""The one UDP endpoint (`ptftpd.datagrams`): one bind wording for every server, a send
that never raises, one reply delay, bursts read per wake-up by `UdpEndpoint`, which every
server's request socket goes through."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from pathlib import Path

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


def _endpoint_run(queued: int, on_burst_raises: int = 0) -> tuple[list[int], list[bytes], bool]:
    """`queued` datagrams waiting on an endpoint's socket before the loop runs: the
    size of each burst handed over, every payload, and whether the reader is gone
    after close."""
    sizes: list[int] = []
    payloads: list[bytes] = []
    log = logging.getLogger("ptftpd.test")

    async def main() -> bool:
        sock = datagrams.udp_socket(
            socket.AF_INET, ("127.0.0.1", 0), where="127.0.0.1", hint=HINT, receive_buffer=1 << 20
        )

        def on_burst(burst: list[datagrams.Datagram]) -> None:
            sizes.append(len(burst))
            if len(sizes) <= on_burst_raises:
                raise RuntimeError("a bug")
            payloads.extend(data for data, _ in burst)

        endpoint = datagrams.endpoint(sock, on_burst, log)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            for i in range(queued):
                peer.sendto(b"%d" % i, sock.getsockname())
            loop = asyncio.get_running_loop()
            endpoint.start(loop)
            for _ in range(20):
                await asyncio.sleep(0.01)
            if on_burst_raises:
                peer.sendto(b"after", sock.getsockname())
                await asyncio.sleep(0.05)
        fileno = sock.fileno()
        endpoint.close()
        return endpoint.closed and not loop.remove_reader(fileno)

    gone = asyncio.run(main())
    return sizes, payloads, gone


def test_an_endpoint_reads_a_burst_per_wakeup() -> None:
    """300 datagrams queued: two wake-ups (256, then 44), in order, none lost; closed,
    the reader is gone."""
    sizes, payloads, gone = _endpoint_run(300)
    assert sizes == [datagrams.BURST, 300 - datagrams.BURST]
    assert payloads == [b"%d" % i for i in range(300)]
    assert gone


def test_an_endpoint_survives_its_handler(caplog: pytest.LogCaptureFixture) -> None:
    """A handler that raises costs its burst (one line on the server's log, not the
    event loop's), never the endpoint."""
    with caplog.at_level(logging.ERROR):
        sizes, payloads, _ = _endpoint_run(3, on_burst_raises=1)
    assert sizes == [3, 1] and payloads == [b"after"]
    (record,) = caplog.records
    assert record.name == "ptftpd.test"
    assert record.getMessage() == "internal error handling 3 datagram(s)"


def test_an_endpoint_sends_now_or_after_the_reply_delay(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("ptftpd.test")

    async def main() -> list[tuple[bytes, float]]:
        loop = asyncio.get_running_loop()
        got: list[tuple[bytes, float]] = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            peer.setblocking(False)
            sock = datagrams.udp_socket(
                socket.AF_INET, ("127.0.0.1", 0), where="127.0.0.1", hint=HINT
            )
            endpoint = datagrams.endpoint(sock, lambda burst: None, log)
            endpoint.start(loop)
            start = loop.time()
            endpoint.send(b"later", peer.getsockname(), delay=0.2)
            endpoint.send(b"now", peer.getsockname())
            endpoint.send(b"lost", ("::1", 9))  # an error costs this datagram only
            for _ in range(40):
                await asyncio.sleep(0.01)
                try:
                    got.append((peer.recv(100), loop.time() - start))
                except BlockingIOError:
                    pass
            endpoint.close()
            endpoint.send(b"closed", peer.getsockname())  # nothing, no error
        return got

    with caplog.at_level(logging.DEBUG):
        got = asyncio.run(main())
    assert [data for data, _ in got] == [b"now", b"later"]
    assert got[0][1] < 0.15 <= got[1][1]
    assert "cannot send to ::1" in caplog.text


# Modules allowed to read sockets themselves: the endpoint; TFTP transfer channels (one
# socket per transfer, read by the driver); dhcpd's destination-aware burst reader (run
# by an endpoint); the RA sender (ICMPv6), HTTP (TCP) and the workers' event pipe.
_OWN_READERS = {
    "datagrams.py",
    "tftp/driver.py",
    "dhcp/peers.py",
    "dhcp6/rasender.py",
    "http/server.py",
    "service/transfer_events.py",
}
_READS = re.compile(
    r"\.(recvfrom|recvmsg|recv_into|recvfrom_into)\(|create_datagram_endpoint|add_reader\("
)


def test_every_udp_server_receives_through_the_endpoint() -> None:
    """TFTP's request port, dhcpd/bootpd, DHCPv6 and pxed's 67/4011 read no socket of
    their own: nothing outside `_OWN_READERS` reads a socket or adds a reader."""
    import ptftpd

    src = Path(ptftpd.__file__).parent
    readers = {
        str(path.relative_to(src)) for path in src.rglob("*.py") if _READS.search(path.read_text())
    }
    assert readers <= _OWN_READERS, sorted(readers - _OWN_READERS)
    for module in ("tftp/server.py", "dhcp/server.py", "dhcp6/service.py", "pxe/service.py"):
        assert "datagrams." in (src / module).read_text(), module
