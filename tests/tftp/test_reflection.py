"""The reflection bound: what one forged request draws from the server.

A request whose source address is forged is never answered by its "client", so
everything the server sends for it lands on a victim. Goals (issue 19): a plain RRQ
never ACKed draws at most 50 times its size (one DATA block, nothing resent), an RRQ
with options at most 3 times (one OACK); a real client that lost our first packet
repeats its request and is answered again; a source that keeps leaving replies
unanswered is cut off by its address's and its network's budget.
"""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path

import pytest

from conftest import start_server
from ptftpd.tftp.budget import (
    PER_ADDRESS,
    PER_NETWORK,
    BucketSize,
    SourceBudget,
    WaitingRoom,
    network_of,
)
from ptftpd.tftp.errors import TransferTimeout
from ptftpd.tftp.packets import Ack, Data, Opcode, OptionAck, Request, decode
from ptftpd.tftp.session import ServerConfig, ServerSession

PEER = ("192.0.2.7", 40000)
CONFIG = ServerConfig(Path("."), blksize_max=65464, windowsize_max=64, retries=5)
PLAIN = Request(Opcode.RRQ, "abc", "octet")  # 12 bytes, the plain RRQ
WITH_OPTIONS = Request(Opcode.RRQ, "abc", "octet", (("blksize", "1468"), ("tsize", "0")))
WRQ = Request(Opcode.WRQ, "abc", "octet")


def never_answered(request: Request, file_size: int = 100_000) -> tuple[list[bytes], float]:
    """Every datagram a session sends to a peer that never answers, and when it ends."""
    session = ServerSession(request, PEER, config=CONFIG, now=0.0, file_size=file_size)
    sent: list[bytes] = []
    step = session.start(0.0)
    if session.pending_start:
        session.feed(b"x" * file_size, True)
        step = session.begin_transfer(0.0)
    sent += step.send
    now = 0.0
    for _ in range(100):
        deadline = session.get_timer()
        if deadline is None:
            break
        now = deadline
        sent += session.handle_timer(now).send
    assert session.closed
    assert isinstance(session.error, TransferTimeout)
    assert "unanswered" in str(session.error)
    return sent, now


@pytest.mark.parametrize(
    ("request_", "limit", "first"),
    [(PLAIN, 50, Data), (WITH_OPTIONS, 3, OptionAck), (WRQ, 1, Ack)],
    ids=["plain RRQ", "RRQ with options", "WRQ"],
)
def test_a_request_never_answered_draws_one_packet(
    request_: Request, limit: int, first: type
) -> None:
    sent, ended = never_answered(request_)
    assert len(sent) == 1, [decode(d) for d in sent]
    assert isinstance(decode(sent[0]), first)
    factor = sum(map(len, sent)) / len(request_.encode())
    assert factor <= limit, factor
    assert ended == pytest.approx(6.0)  # the usual lifetime: timeout x (retries + 1)


def test_the_clients_timeout_option_waits_only_once_it_answered() -> None:
    request = Request(Opcode.RRQ, "abc", "octet", (("timeout", "255"),))
    _, ended = never_answered(request)
    assert ended == pytest.approx(6.0)  # not 6 x 255 s for a forged request


def test_a_repeated_request_is_answered_again_until_the_client_answers() -> None:
    session = ServerSession(PLAIN, PEER, config=CONFIG, now=0.0, file_size=2000)
    session.start(0.0)
    session.feed(b"y" * 2000, True)
    first = session.begin_transfer(0.0).send
    assert [decode(d) for d in first] == [Data(1, b"y" * 512)]
    assert session.handle_timer(1.0).send == []  # no resend to a peer never heard
    again = session.repeat_request(1.5)
    assert again.send == first  # the client lost DATA 1 and asked again
    assert session.get_timer() == 2.0  # a repeat never prolongs the session
    assert [decode(d) for d in session.receive(Ack(1).encode(), PEER, 1.6).send] == [
        Data(2, b"y" * 512)
    ]
    assert session.heard
    assert session.repeat_request(1.7).send == []  # stale once the client answered
    # Heard from: the usual retransmission on timeout.
    assert [decode(d) for d in session.handle_timer(2.6).send] == [Data(2, b"y" * 512)]


def test_budget_per_address_and_per_network() -> None:
    budget = SourceBudget(BucketSize(3, 1), BucketSize(5, 2))
    assert [budget.take("10.0.0.1", 0.0) for _ in range(4)] == [True, True, True, False]
    assert budget.take("10.0.0.2", 0.0) and budget.take("10.0.0.3", 0.0)
    assert not budget.take("10.0.0.4", 0.0)  # the /24 is empty
    assert budget.take("10.0.1.4", 0.0)  # another /24
    budget.give_back("10.0.0.1", 3, 0.0)  # the client answered: its tokens return
    assert [budget.take("10.0.0.1", 0.0) for _ in range(4)] == [True, True, True, False]
    assert not budget.take("10.0.0.5", 0.1)
    assert budget.take("10.0.0.5", 0.6)  # the /24 refilled one token at 2 a second
    assert budget.dropped == 4


def test_a_request_over_budget_waits_for_a_token() -> None:
    """Over budget, a request waits: it is served when an earlier client of its address
    answers (a token comes back) or the bucket refills, dropped when its wait is over;
    the room is bounded per address and in all, and holds a repeated request once."""
    budget = SourceBudget(BucketSize(2, 1), BucketSize(100, 100))
    room: WaitingRoom[str] = WaitingRoom(hold=2.0, per_address=3, total=4)
    assert budget.take("10.0.0.1", 0.0) and budget.take("10.0.0.1", 0.0)
    assert not budget.take("10.0.0.1", 0.0)
    for n in range(3):
        assert room.hold("10.0.0.1", ("k", n), f"r{n}", 0.0)
    assert ("k", 0) in room and ("k", 3) not in room
    assert not room.hold("10.0.0.1", ("k", 3), "r3", 0.0)  # its address's share is full
    assert room.hold("10.0.0.2", ("j", 0), "s0", 0.0)
    assert not room.hold("10.0.0.3", ("i", 0), "t0", 0.0)  # the room is full
    assert room.release(budget, 0.1, ["10.0.0.1"]) == ([], [])  # no token yet
    budget.give_back("10.0.0.1", 1, 0.1)  # a client answered
    assert room.release(budget, 0.1, ["10.0.0.1"]) == (["r0"], [])
    assert room.release(budget, 1.2, None) == (["r1", "s0"], [])  # refilled, 1 a second
    assert room.release(budget, 2.5, None) == ([], ["r2"])  # waited too long
    assert len(room) == 0 and ("k", 2) not in room
    assert budget.dropped == 1  # take() counts its refusals, release() does not


def test_budget_state_is_bounded() -> None:
    budget = SourceBudget(BucketSize(2, 1), BucketSize(2, 1), max_sources=100)
    for i in range(10_000):
        budget.take(f"10.{i // 256 % 256}.{i % 256}.1", 0.0)
    assert budget.tracked() <= 200
    # Later, refilled buckets make room for new sources.
    assert budget.take("172.16.0.1", 5.0)
    assert budget.tracked() <= 200


def test_networks() -> None:
    assert network_of("192.0.2.7") == network_of("192.0.2.200") != network_of("192.0.3.7")
    assert network_of("::ffff:192.0.2.7") == network_of("192.0.2.7")
    assert network_of("2001:db8:1:2::5") == network_of("2001:db8:1:2:ffff::1%eth0")
    assert network_of("2001:db8:1:2::5") != network_of("2001:db8:1:3::5")


def test_budget_sizes_let_a_boot_storm_through() -> None:
    """1,000 machines of one /24 all asking at once (4 per address, every address in
    use) fit the budget; the 1,025th unanswered request of the /24 is dropped."""
    budget = SourceBudget()
    taken = [budget.take(f"10.1.1.{i % 250 + 1}", 0.0) for i in range(1000)]
    assert all(taken)
    assert PER_ADDRESS.burst >= 4 and PER_NETWORK.burst >= 1000
    budget.take("10.1.1.1", 0.0)
    assert sum(budget.take("10.1.1.2", 0.0) for _ in range(100)) <= PER_NETWORK.burst - 1000


def _receive_all(sock: socket.socket, seconds: float) -> list[bytes]:
    got: list[bytes] = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            got.append(sock.recvfrom(65536)[0])
        except TimeoutError:
            break
    return got


@pytest.mark.parametrize(
    ("request_", "limit"), [(PLAIN, 50), (WITH_OPTIONS, 3)], ids=["plain", "options"]
)
def test_ptftpd_draws_one_reply_for_a_request_never_acked(
    tmp_path: Path, request_: Request, limit: int
) -> None:
    """The real server, one request that is never answered: one reply, nothing resent
    (the reply is sent to the address the request came from, here our socket)."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "abc").write_bytes(b"z" * 100_000)
    server = start_server(root, tmp_path / "ptftpd.log", "--timeout", "0.3", "--retries", "3")
    victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    victim.bind(("127.0.0.1", 0))
    try:
        victim.sendto(request_.encode(), (server.host, server.port))
        got = _receive_all(victim, 0.3 * 4 + 1.0)
    finally:
        victim.close()
        assert server.process.stop() == 0
    assert len(got) == 1, [decode(d) for d in got]
    factor = sum(map(len, got)) / len(request_.encode())
    assert factor <= limit, factor


def test_ptftpd_budget_cuts_off_a_flood_from_one_address(tmp_path: Path) -> None:
    """A flood of requests from one address, none ever answered: after the address's
    burst only a trickle of replies; another client of the same /24 still downloads."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "abc").write_bytes(b"z" * 100_000)
    # One process: each --workers process keeps its own budget (README: security).
    server = start_server(root, tmp_path / "ptftpd.log", "--timeout", "5", "--workers", "1")
    flood = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    try:
        for sock in flood:
            sock.bind(("127.0.0.1", 0))
        started = time.monotonic()
        for i in range(400):  # 100 per port: each a new transfer, none ever ACKed
            unknown_option = (("x-flood", str(i)),)  # ignored: the reply is DATA 1
            request = Request(Opcode.RRQ, "abc", "octet", unknown_option)
            flood[i % 4].sendto(request.encode(), (server.host, server.port))
        replies = sum(len(_receive_all(sock, 0.5)) for sock in flood)
        elapsed = time.monotonic() - started
        assert replies <= PER_ADDRESS.burst + PER_ADDRESS.rate * elapsed + 1, replies
        # Another address of the same /24 is a different source: it downloads.
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.bind(("127.0.0.2", 0))
        other.settimeout(5)
        other.sendto(PLAIN.encode(), (server.host, server.port))
        data, _ = other.recvfrom(65536)
        assert decode(data) == Data(1, b"z" * 512)
        other.close()
    finally:
        for sock in flood:
            sock.close()
        assert server.process.stop() == 0


def test_ptftpd_serves_a_burst_from_one_address_whose_clients_answer(tmp_path: Path) -> None:
    """100 clients of one address ask at once, more than the address's budget; each
    answers its DATA as soon as it has it. Every one is served: the requests over the
    budget wait until the earlier clients' answers bring tokens back (dropping them made
    one client in a hundred wait out a retransmission in the 100-client benchmark)."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "abc").write_bytes(b"q" * 100)  # one block: its ACK ends the transfer
    server = start_server(root, tmp_path / "ptftpd.log", "--workers", "1")
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(100)]
    assert len(clients) > PER_ADDRESS.burst
    answered: set[int] = set()
    try:
        for sock in clients:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
        for sock in clients:  # every request sent before any answer is read
            sock.sendto(PLAIN.encode(), (server.host, server.port))
        end = time.monotonic() + 10  # a bound, not a measure: no client asks twice
        while len(answered) < len(clients) and time.monotonic() < end:
            ready = [s for s in clients if s.fileno() not in answered]
            for sock in select.select(ready, [], [], 0.2)[0]:
                data, source = sock.recvfrom(65536)
                assert decode(data) == Data(1, b"q" * 100)
                sock.sendto(Ack(1).encode(), source)
                answered.add(sock.fileno())
    finally:
        for sock in clients:
            sock.close()
        assert server.process.stop() == 0
    assert len(answered) == len(clients), f"{len(clients) - len(answered)} never answered"
