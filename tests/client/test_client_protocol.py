"""Wire behaviour no well-behaved server shows on demand, played by a scripted peer on
loopback: ERROR 8 then a retry without options, an OACK granting too much, packets
from a foreign port, a gap in a window, a lost request, a server that goes silent."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ptftpd.tftp import (
    ProtocolError,
    RemoteError,
    TftpClient,
    TftpError,
    TransferOptions,
    TransferTimeout,
    parse_url,
)
from ptftpd.tftp.packets import Ack, Data, Error, OptionAck, Request, decode

Script = Callable[[socket.socket, list[object]], None]


class Peer:
    """A UDP 'server' on 127.0.0.1 running `script` in a thread; every wait bounded."""

    def __init__(self, script: Script) -> None:
        self.listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.listen.bind(("127.0.0.1", 0))
        self.listen.settimeout(10)
        self.port = self.listen.getsockname()[1]
        self.seen: list[object] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    def _run(self, script: Script) -> None:
        try:
            script(self.listen, self.seen)
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self) -> None:
        self.thread.join(15)
        self.listen.close()
        assert not self.thread.is_alive(), "scripted peer did not finish"
        if self.error is not None:
            raise self.error


def tid() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    return sock


def receive(sock: socket.socket, seen: list[object]) -> tuple[object, tuple[str, int]]:
    data, addr = sock.recvfrom(70000)
    packet = decode(data)
    seen.append(packet)
    return packet, addr


@pytest.fixture
def peer_factory() -> Iterator[Callable[[Script], Peer]]:
    peers: list[Peer] = []

    def make(script: Script) -> Peer:
        peer = Peer(script)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.join()


def test_option_refused_then_retry_without_options(
    peer_factory: Callable[[Script], Peer], tmp_path: Path
) -> None:
    def script(listen: socket.socket, seen: list[object]) -> None:
        first, client = receive(listen, seen)
        assert isinstance(first, Request) and first.options
        with tid() as s:
            s.sendto(Error(8, "no options here").encode(), client)
        second, client = receive(listen, seen)
        assert isinstance(second, Request) and second.options == ()
        with tid() as s:
            s.sendto(Data(1, b"hello").encode(), client)
            ack, _ = receive(s, seen)
            assert ack == Ack(1)

    peer = peer_factory(script)
    out = tmp_path / "out"
    asked = TransferOptions(blksize=1428, tsize=True)
    result = TftpClient("127.0.0.1", peer.port, asked).download("f", out)
    peer.join()
    assert out.read_bytes() == b"hello"
    assert result.rfc1350_fallback and result.blksize == 512


def test_oack_granting_unrequested_option_is_refused(
    peer_factory: Callable[[Script], Peer], tmp_path: Path
) -> None:
    def script(listen: socket.socket, seen: list[object]) -> None:
        _, client = receive(listen, seen)
        with tid() as s:
            s.sendto(OptionAck((("blksize", "1428"), ("windowsize", "4"))).encode(), client)
            error, _ = receive(s, seen)
            assert isinstance(error, Error) and error.code == 8

    peer = peer_factory(script)
    out = tmp_path / "out"
    with pytest.raises(ProtocolError, match="windowsize"):
        TftpClient("127.0.0.1", peer.port, TransferOptions(blksize=1428)).download("f", out)
    peer.join()
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_foreign_port_gets_error_5_and_transfer_goes_on(
    peer_factory: Callable[[Script], Peer], tmp_path: Path
) -> None:
    block1 = bytes(range(256)) * 2

    def script(listen: socket.socket, seen: list[object]) -> None:
        _, client = receive(listen, seen)
        with tid() as s, tid() as intruder:
            s.sendto(Data(1, block1).encode(), client)
            assert receive(s, seen)[0] == Ack(1)
            intruder.sendto(Data(2, b"evil").encode(), client)
            reply, _ = receive(intruder, seen)
            assert isinstance(reply, Error) and reply.code == 5
            s.sendto(Data(2, b"good").encode(), client)
            assert receive(s, seen)[0] == Ack(2)

    peer = peer_factory(script)
    out = tmp_path / "out"
    TftpClient("127.0.0.1", peer.port).download("f", out)
    peer.join()
    assert out.read_bytes() == block1 + b"good"


def test_window_gap_is_acked_at_last_in_order_block(
    peer_factory: Callable[[Script], Peer], tmp_path: Path
) -> None:
    blocks = {n: bytes([n]) * 8 for n in range(1, 5)}
    blocks[5] = b"end"

    def script(listen: socket.socket, seen: list[object]) -> None:
        _, client = receive(listen, seen)
        with tid() as s:
            s.sendto(OptionAck((("blksize", "8"), ("windowsize", "4"))).encode(), client)
            assert receive(s, seen)[0] == Ack(0)
            for n in (1, 2, 4):  # block 3 "lost"
                s.sendto(Data(n, blocks[n]).encode(), client)
            assert receive(s, seen)[0] == Ack(2)
            for n in (3, 4, 5):
                s.sendto(Data(n, blocks[n]).encode(), client)
            assert receive(s, seen)[0] == Ack(5)

    peer = peer_factory(script)
    out = tmp_path / "out"
    asked = TransferOptions(blksize=8, windowsize=4)
    result = TftpClient("127.0.0.1", peer.port, asked).download("f", out)
    peer.join()
    assert out.read_bytes() == b"".join(blocks[n] for n in range(1, 6))
    assert (result.blksize, result.windowsize) == (8, 4)


def test_lost_request_is_resent(peer_factory: Callable[[Script], Peer], tmp_path: Path) -> None:
    def script(listen: socket.socket, seen: list[object]) -> None:
        receive(listen, seen)  # "lost": not answered
        _, client = receive(listen, seen)
        with tid() as s:
            s.sendto(Data(1, b"x").encode(), client)
            assert receive(s, seen)[0] == Ack(1)

    peer = peer_factory(script)
    out = tmp_path / "out"
    TftpClient("127.0.0.1", peer.port, TransferOptions(timeout=0.3)).download("f", out)
    peer.join()
    assert out.read_bytes() == b"x"
    assert len([p for p in peer.seen if isinstance(p, Request)]) == 2


def test_server_going_silent_leaves_no_partial_file(
    peer_factory: Callable[[Script], Peer], tmp_path: Path
) -> None:
    def script(listen: socket.socket, seen: list[object]) -> None:
        _, client = receive(listen, seen)
        with tid() as s:
            s.sendto(Data(1, b"a" * 512).encode(), client)
            assert receive(s, seen)[0] == Ack(1)
            s.settimeout(2)
            try:
                while True:  # the client re-ACKs, then gives up
                    receive(s, seen)
            except TimeoutError:
                pass

    peer = peer_factory(script)
    out = tmp_path / "out"
    with pytest.raises(TransferTimeout, match="timed out"):
        asked = TransferOptions(timeout=0.2, retries=2)
        TftpClient("127.0.0.1", peer.port, asked).download("f", out)
    peer.join()
    assert list(tmp_path.iterdir()) == []
    assert peer.seen.count(Ack(1)) == 3  # the first ACK and two retransmissions


def test_error_8_after_the_oack_is_not_retried(
    peer_factory: Callable[[Script], Peer], tmp_path: Path
) -> None:
    """Only an ERROR answering the request itself may be retried without options."""

    def script(listen: socket.socket, seen: list[object]) -> None:
        _, client = receive(listen, seen)
        with tid() as s:
            s.sendto(OptionAck((("blksize", "1428"),)).encode(), client)
            assert receive(s, seen)[0] == Ack(0)
            s.sendto(Error(8, "changed my mind").encode(), client)
        listen.settimeout(1)
        try:
            receive(listen, seen)
        except TimeoutError:
            pass

    peer = peer_factory(script)
    out = tmp_path / "out"
    with pytest.raises(RemoteError) as info:
        TftpClient("127.0.0.1", peer.port, TransferOptions(blksize=1428)).download("f", out)
    peer.join()
    assert info.value.code == 8 and "changed my mind" in str(info.value)
    assert len([p for p in peer.seen if isinstance(p, Request)]) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tftp://10.0.0.1/pxelinux.0", ("10.0.0.1", None, "pxelinux.0", None)),
        ("tftp://host:6969/dir/f%20g", ("host", 6969, "dir/f g", None)),
        ("TFTP://[::1]:69/a.txt;mode=netascii", ("::1", 69, "a.txt", "netascii")),
        ("tftp://[fe80::1]/boot/x", ("fe80::1", None, "boot/x", None)),
    ],
)
def test_parse_url(url: str, expected: tuple[object, ...]) -> None:
    parsed = parse_url(url)
    assert (parsed.host, parsed.port, parsed.path, parsed.mode) == expected


@pytest.mark.parametrize(
    "url", ["http://h/f", "tftp://h/", "tftp:///f", "tftp://h:99999/f", "tftp://h/f;mode=mail"]
)
def test_parse_url_rejects(url: str) -> None:
    with pytest.raises(TftpError, match="invalid URL"):
        parse_url(url)
