"""The TFTP fuzz job: hostile but well-formed packets into the codec, the request port's
rules and both kinds of session.

Hypothesis builds real RRQ/WRQ/DATA/ACK/ERROR/OACK structure with random fields and
hostile sizes (hundreds of options, values of thousands of digits, names past the cap,
payloads of a whole datagram), so every branch after the opcode is reached, not just
"garbage in, PacketError out". Each outcome must be well defined: the codec's own
`PacketError`, a request to serve or an ERROR to send (short), a session that answers
with at most one window of packets no larger than negotiated, ends by itself within its
retries, and holds memory in proportion to one window, not to what the peer sends.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptftpd.tftp.errors import LocalError, TftpError
from ptftpd.tftp.options import TransferOptions
from ptftpd.tftp.packets import (
    MAX_DATAGRAM,
    Ack,
    Data,
    Error,
    Opcode,
    OptionAck,
    Packet,
    PacketError,
    Request,
    decode,
)
from ptftpd.tftp.request_rules import MAX_FILENAME, RequestRules
from ptftpd.tftp.session import (
    ClientSession,
    ServerConfig,
    ServerSession,
)

PEER = ("192.0.2.1", 3000)
OTHER = ("192.0.2.1", 3001)  # the same host, another port: a foreign TID
SERVER = ("192.0.2.2", 69)
TID = ("192.0.2.2", 40000)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KNOWN = ["blksize", "tsize", "timeout", "windowsize", "BlkSize", "TSIZE"]
numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["0", "1", "7", "8", "512", "65464", "65465", "1e3", " 9 ", "", "0x10"]),
    st.integers(1, 6000).map(lambda n: "9" * n),  # past int()'s 4,300-digit limit too
)
texts = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=40)
option_names = st.one_of(st.sampled_from(KNOWN), texts.filter(bool))
option_values = st.one_of(numbers, texts, st.integers(0, 70_000).map(lambda n: "v" * n))
options = st.lists(st.tuples(option_names, option_values), max_size=300)
filenames = st.one_of(
    texts,
    st.integers(0, MAX_FILENAME + 50).map(lambda n: "a" * n),
    st.integers(MAX_FILENAME - 2, MAX_FILENAME + 2).map(lambda n: "\\" * n),
    st.sampled_from(["../../etc/passwd", "/pxelinux.0", "C:\\boot\\x", "é" * 300]),
)
modes = st.one_of(
    st.sampled_from(["octet", "netascii", "OCTET", "NetAscii", "mail"]),
    texts,
    st.integers(0, 5000).map(lambda n: "m" * n),
)
requests = st.builds(
    Request, st.sampled_from([Opcode.RRQ, Opcode.WRQ]), filenames, modes, options.map(tuple)
)
payloads = st.one_of(
    st.binary(max_size=600),
    st.integers(0, MAX_DATAGRAM - 4).map(lambda n: b"d" * n),
)
peer_packets: st.SearchStrategy[Packet] = st.one_of(
    st.builds(Ack, st.integers(0, 65535)),
    st.builds(Data, st.integers(0, 65535), payloads),
    st.builds(Error, st.integers(0, 65535), texts),
    st.builds(OptionAck, options.map(tuple)),
    requests,
)


def encoded(packet: Packet) -> bytes:
    return packet.encode()


@FUZZ
@given(st.one_of(peer_packets, requests), st.integers(0, 40))
def test_codec_round_trip_or_its_own_error(packet: Packet, cut: int) -> None:
    data = encoded(packet)
    try:
        back = decode(data)
    except PacketError:
        # Only what the codec cannot represent: an OACK/request option with an empty
        # name or a request with fields that hold no NUL-free text.
        assert isinstance(packet, OptionAck | Request)
    else:
        assert type(back) is type(packet)
        if isinstance(packet, Data | Ack):
            assert back == packet
    for truncated in (data[: len(data) - cut], data[:cut], data + b"\0" * cut):
        try:
            decode(truncated)
        except PacketError:
            pass


@FUZZ
@given(requests, st.booleans(), st.integers(0, 20_000))
def test_request_rules_serve_or_refuse_briefly(
    request: Request, read_only: bool, unpaired: int
) -> None:
    rules = RequestRules(read_only=read_only, max_sessions=4)
    # An option without a value (malformed): the ERROR must not echo all of it.
    malformed = rules.check(request.encode() + b"o" * (unpaired + 1) + b"\0", PEER)
    assert isinstance(malformed, LocalError) and len(malformed.message) <= 100
    verdict = rules.check(request.encode(), PEER)
    if isinstance(verdict, LocalError):
        assert len(verdict.message) <= 100, verdict.message
        return
    if verdict is None:
        return
    assert isinstance(verdict, Request)
    assert len(verdict.filename.encode("utf-8", "surrogateescape")) <= MAX_FILENAME


def _bounded(session: ServerSession | ClientSession, step_send: list[bytes]) -> None:
    window = 1 if session.machine is None else session.machine.windowsize
    blksize = 65464 if session.machine is None else session.machine.blksize
    assert len(step_send) <= max(window, 1)
    for datagram in step_send:
        assert 0 < len(datagram) <= max(blksize + 4, 600)


@FUZZ
@given(
    requests,
    st.integers(0, 300_000),
    st.lists(st.tuples(peer_packets, st.booleans(), st.booleans()), max_size=30),
)
def test_server_session_stays_bounded(
    request: Request, file_size: int, events: list[tuple[Packet, bool, bool]]
) -> None:
    rules = RequestRules(read_only=False, max_sessions=4)
    verdict = rules.check(request.encode(), PEER)
    if not isinstance(verdict, Request):
        return
    tracemalloc.start()
    try:
        try:
            session = ServerSession(
                verdict,
                PEER,
                config=ServerConfig(Path("."), retries=3),
                now=0.0,
                file_size=file_size,
                free_space=10**6,
            )
        except LocalError:
            return  # a WRQ announcing more than the free space: refused with ERROR 3
        content = b"f" * file_size
        fed = 0

        def drive(send: list[bytes]) -> None:
            nonlocal fed
            _bounded(session, send)
            while (wanted := session.wanted) > 0:
                chunk = content[fed : fed + max(wanted, 4096)]
                fed += len(chunk)
                session.feed(chunk, len(chunk) < max(wanted, 4096))
            if session.pending_start:
                drive(session.begin_transfer(now).send)

        now = 0.0
        drive(session.start(now).send)
        for packet, foreign, tick in events:
            source = OTHER if foreign else PEER
            drive(session.receive(packet.encode(), source, now).send)
            assert all(addr == OTHER for _, addr in session.take_stray())
            if tick and (deadline := session.get_timer()) is not None:
                now = deadline
                drive(session.handle_timer(now).send)
        # Left alone, every session ends by itself within its retries.
        for _ in range(10):
            deadline = session.get_timer()
            if deadline is None:
                break
            now = max(now, deadline)
            drive(session.handle_timer(now).send)
        assert session.get_timer() is None and session.closed
        assert session.settled or session.error is not None or session.succeeded
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    machine = session.machine
    assert machine is not None
    window = machine.windowsize * (machine.blksize + 4)
    # One window being sent and the next one ready, plus the packets that came in.
    assert peak <= 3 * window + 2 * MAX_DATAGRAM + 2_000_000, (peak, window)


@FUZZ
@given(
    st.booleans(),
    st.builds(
        TransferOptions,
        blksize=st.one_of(st.none(), st.integers(8, 65464)),
        windowsize=st.one_of(st.none(), st.integers(1, 64)),
        tsize=st.booleans(),
    ),
    st.lists(st.tuples(peer_packets, st.booleans()), max_size=30),
)
def test_client_session_stays_bounded(
    is_read: bool, options: TransferOptions, events: list[tuple[Packet, bool]]
) -> None:
    session = ClientSession(SERVER, "f", is_read=is_read, options=options, now=0.0, local_size=100)
    now = 0.0

    def drive(send: list[bytes]) -> None:
        _bounded(session, send)
        while (wanted := session.wanted) > 0:
            session.feed(b"u" * min(wanted, 100), True)
        if session.pending_start:
            drive(session.begin_transfer(now).send)

    drive(session.start(now).send)
    for packet, tick in events:
        source = session.peer or TID
        drive(session.receive(packet.encode(), source, now).send)
        session.take_stray()
        if tick and (deadline := session.get_timer()) is not None:
            now = deadline
            drive(session.handle_timer(now).send)
    for _ in range(20):
        deadline = session.get_timer()
        if deadline is None:
            break
        now = max(now, deadline)
        drive(session.handle_timer(now).send)
    assert session.get_timer() is None
    assert session.succeeded or isinstance(session.error, TftpError)
