"""The sans-IO sessions, bytes in and bytes out with a fake clock: the request-phase
rules of both ends (ported from the scripted-peer cases of tests/client and the request
rules of test_safety.py) and a client session against a server session over a
simulated network that loses, duplicates and reorders datagrams."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ptftpd.tftp.errors import (
    FinalAckLost,
    LocalError,
    ProtocolError,
    RemoteError,
    RequestRefused,
    TransferTimeout,
)
from ptftpd.tftp.machine import Step
from ptftpd.tftp.options import TransferOptions
from ptftpd.tftp.packets import (
    Ack,
    Data,
    Error,
    ErrorCode,
    Opcode,
    OptionAck,
    Request,
    decode,
)
from ptftpd.tftp.request_rules import RequestRules
from ptftpd.tftp.session import (
    Address,
    ClientSession,
    ServerConfig,
    ServerSession,
)

SERVER: Address = ("10.0.0.2", 69)
TID: Address = ("10.0.0.2", 7000)
CLIENT: Address = ("10.0.0.1", 5000)
STRANGER: Address = ("10.0.0.2", 7001)


def packets(step: Step) -> list[object]:
    return [decode(d) for d in step.send]


def client(is_read: bool = True, **options: object) -> ClientSession:
    opts = TransferOptions(**options)  # type: ignore[arg-type]
    return ClientSession(SERVER, "f", is_read=is_read, options=opts, now=0.0, local_size=None)


# -- client request phase -------------------------------------------------------------
def test_request_is_resent_at_its_deadline_then_times_out() -> None:
    c = client(timeout=2.0, retries=2)
    assert packets(c.start(0.0)) == [Request(Opcode.RRQ, "f", "octet", (("timeout", "2"),))]
    assert c.get_timer() == 2.0
    assert c.handle_timer(1.9).send == []  # not yet due
    assert packets(c.handle_timer(2.0))[0] == Request(Opcode.RRQ, "f", "octet", (("timeout", "2"),))
    assert c.get_timer() == 4.0
    c.handle_timer(4.0)
    assert c.handle_timer(6.0).send == [] and isinstance(c.error, TransferTimeout)
    assert "no answer from 10.0.0.2:69 after 3 tries" in str(c.error)
    assert c.get_timer() is None and c.closed


def test_option_refused_then_retry_without_options() -> None:
    c = client(blksize=1428, tsize=True)
    first = packets(c.start(0.0))[0]
    assert isinstance(first, Request) and first.options
    again = packets(c.receive(Error(8, "no options here").encode(), TID, 0.1))
    assert again == [Request(Opcode.RRQ, "f", "octet", ())]
    step = c.receive(Data(1, b"hello").encode(), TID, 0.2)
    assert packets(step) == [Ack(1)] and step.data == b"hello"
    assert c.succeeded and c.fallback and c.blksize == 512


def test_error_8_after_the_oack_is_not_retried() -> None:
    c = client(blksize=1428)
    c.start(0.0)
    assert packets(c.receive(OptionAck((("blksize", "1428"),)).encode(), TID, 0.1)) == [Ack(0)]
    assert c.receive(Error(8, "changed my mind").encode(), TID, 0.2).send == []
    assert isinstance(c.error, RemoteError) and not isinstance(c.error, RequestRefused)
    assert c.error.code == 8


def test_oack_granting_unrequested_option_is_refused() -> None:
    c = client(blksize=1428)
    c.start(0.0)
    oack = OptionAck((("blksize", "1428"), ("windowsize", "4"))).encode()
    reply = packets(c.receive(oack, TID, 0.1))
    assert len(reply) == 1 and isinstance(reply[0], Error) and reply[0].code == 8
    assert c.dest == TID
    assert isinstance(c.error, ProtocolError) and "windowsize" in str(c.error)
    assert c.error.code == ErrorCode.OPTION_REFUSED


def test_refused_request_is_a_remote_error() -> None:
    c = client()
    c.start(0.0)
    c.receive(Error(1, "file not found").encode(), TID, 0.1)
    assert isinstance(c.error, RequestRefused) and c.error.code == 1


def test_foreign_port_gets_error_5_and_transfer_goes_on() -> None:
    c = client()
    c.start(0.0)
    c.receive(Data(1, b"a" * 512).encode(), TID, 0.1)
    assert c.receive(Data(2, b"x").encode(), STRANGER, 0.2).send == []
    stray = c.take_stray()
    assert [(decode(d), a) for d, a in stray] == [(Error(5, "unknown transfer ID"), STRANGER)]
    assert c.take_stray() == []  # taken: the caller's to send
    c.receive(Error(0, "go away").encode(), STRANGER, 0.3)
    assert c.take_stray() == [] and c.error is None  # an ERROR is never answered
    step = c.receive(Data(2, b"end").encode(), TID, 0.4)
    assert packets(step) == [Ack(2)] and c.succeeded


def test_reply_from_another_host_is_not_latched() -> None:
    c = client()
    c.start(0.0)
    assert c.receive(Data(1, b"x").encode(), ("10.9.9.9", 7000), 0.1).send == []
    assert c.peer is None and not c.settled


def test_window_gap_is_acked_at_last_in_order_block() -> None:
    c = client(windowsize=4)
    c.start(0.0)
    assert packets(c.receive(OptionAck((("windowsize", "4"),)).encode(), TID, 0.1)) == [Ack(0)]
    c.receive(Data(1, b"a" * 512).encode(), TID, 0.2)
    assert packets(c.receive(Data(3, b"c" * 512).encode(), TID, 0.3)) == [Ack(1)]
    assert c.receive(Data(4, b"d" * 512).encode(), TID, 0.3).send == []  # once per gap


def test_rfc1350_fallback_on_ack_0_for_a_put() -> None:
    c = ClientSession(
        SERVER, "f", is_read=False, options=TransferOptions(blksize=1428), now=0.0, local_size=3
    )
    c.start(0.0)
    assert c.receive(Ack(0).encode(), TID, 0.1).send == [] and c.pending_start
    assert c.wanted > 0
    c.feed(b"abc", True)
    assert packets(c.begin_transfer(0.1)) == [Data(1, b"abc")]
    c.receive(Ack(1).encode(), TID, 0.2)
    assert c.succeeded and c.closed and c.fallback and c.blksize == 512


def test_dally_re_acks_a_resent_final_block_until_its_deadline() -> None:
    c = client(timeout=1.0)
    c.start(0.0)
    c.receive(Data(1, b"end").encode(), TID, 0.5)
    assert c.succeeded and not c.closed and c.get_timer() == 1.5
    assert packets(c.receive(Data(1, b"end").encode(), TID, 1.0)) == [Ack(1)]
    c.handle_timer(1.5)
    assert c.closed and c.get_timer() is None and c.error is None


def test_silent_server_after_the_oack_times_out() -> None:
    c = client(blksize=1428, retries=1)
    c.start(0.0)
    c.receive(OptionAck((("blksize", "1428"),)).encode(), TID, 0.1)
    assert packets(c.handle_timer(1.1)) == [Ack(0)]
    c.handle_timer(2.1)
    assert isinstance(c.error, TransferTimeout) and "timed out" in str(c.error)


def test_transfer_options_are_checked_once() -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        TransferOptions(mode="mail")
    with pytest.raises(ValueError, match="blksize"):
        TransferOptions(blksize=7)
    assert TransferOptions(mode="NetASCII").mode == "netascii"
    assert TransferOptions(tsize=True, mode="netascii").requested(is_read=True, size=None) == {}
    assert TransferOptions(blksize=512, rfc1350=True).requested(is_read=True, size=None) == {}


# -- server request rules --------------------------------------------------------------
def test_request_rules() -> None:
    rules = RequestRules(read_only=True, max_sessions=1)
    rrq = Request(Opcode.RRQ, "f", "octet").encode()
    assert rules.check(Ack(1).encode(), CLIENT) is None  # not a request: ignored
    malformed = rules.check(b"\x00\x01f", CLIENT)
    assert isinstance(malformed, LocalError) and malformed.code == ErrorCode.ILLEGAL_OPERATION
    mode = rules.check(Request(Opcode.RRQ, "f", "mail").encode(), CLIENT)
    assert isinstance(mode, LocalError) and mode.code == ErrorCode.ILLEGAL_OPERATION
    wrq = rules.check(Request(Opcode.WRQ, "f", "octet").encode(), CLIENT)
    assert isinstance(wrq, LocalError) and wrq.code == ErrorCode.ACCESS_VIOLATION
    assert isinstance(rules.check(rrq, CLIENT), Request)
    rules.started(rules.key(rrq, CLIENT))
    assert rules.check(rrq, CLIENT) is None  # duplicate request while it runs
    busy = rules.check(rrq, ("10.0.0.1", 5001))
    assert isinstance(busy, LocalError) and busy.code == ErrorCode.NOT_DEFINED
    rules.finished(rules.key(rrq, CLIENT))
    assert isinstance(rules.check(rrq, ("10.0.0.1", 5001)), Request)


def server(request: Request, rfc1350: bool = False, **kwargs: object) -> ServerSession:
    config = ServerConfig(Path("."), rfc1350=rfc1350, retries=3)
    return ServerSession(request, CLIENT, config=config, now=0.0, **kwargs)  # type: ignore[arg-type]


def test_server_wrong_tid_gets_error_5_and_transfer_goes_on() -> None:
    s = server(Request(Opcode.RRQ, "f", "octet"), file_size=3)
    assert s.start(0.0).send == [] and s.pending_start
    s.feed(b"abc", True)
    assert packets(s.begin_transfer(0.0)) == [Data(1, b"abc")]
    assert s.receive(Ack(1).encode(), ("10.0.0.1", 5999), 0.1).send == []
    assert [decode(d) for d, _ in s.stray] == [Error(5, "unknown transfer ID")]
    assert not s.settled
    s.receive(Ack(1).encode(), CLIENT, 0.2)
    assert s.succeeded and s.closed


def test_server_rfc1350_sends_no_oack_and_refuses_nothing() -> None:
    request = Request(Opcode.RRQ, "f", "octet", (("blksize", "1428"), ("tsize", "0")))
    s = server(request, file_size=3, rfc1350=True)
    assert s.negotiated.oack == () and s.negotiated.blksize == 512
    s.start(0.0)
    s.feed(b"abc", True)
    assert packets(s.begin_transfer(0.0)) == [Data(1, b"abc")]


def test_server_oack_only_lists_requested_options_and_waits_for_ack_0() -> None:
    request = Request(Opcode.RRQ, "f", "octet", (("tsize", "0"), ("blksize", "100000")))
    s = server(request, file_size=3)
    s.start(0.0)
    s.feed(b"abc", True)
    first = packets(s.begin_transfer(0.0))
    assert first == [OptionAck((("tsize", "3"), ("blksize", "65464")))]
    # Not resent to a client never heard from (maybe a forged source: issue 19), but
    # again when the client repeats its request; then DATA 1 only after ACK 0.
    assert packets(s.handle_timer(1.0)) == []
    assert packets(s.repeat_request(1.2)) == first
    assert packets(s.receive(Ack(0).encode(), CLIENT, 1.5)) == [Data(1, b"abc")]


def test_server_refuses_tsize_beyond_free_space() -> None:
    request = Request(Opcode.WRQ, "f", "octet", (("tsize", "1000"),))
    with pytest.raises(LocalError) as refusal:
        server(request, free_space=999)
    assert refusal.value.code == ErrorCode.DISK_FULL
    assert server(request, free_space=1000).negotiated.tsize == 1000


def test_server_upload_acks_0_and_dallies() -> None:
    s = server(Request(Opcode.WRQ, "f", "netascii"))
    assert packets(s.start(0.0)) == [Ack(0)]
    step = s.receive(Data(1, b"a\r\nb\r").encode(), CLIENT, 0.1)
    assert step.data == b"a\nb\r" and s.succeeded and not s.closed  # CR flushed at the end
    assert packets(s.receive(Data(1, b"a\r\nb\r").encode(), CLIENT, 0.5)) == [Ack(1)]
    s.handle_timer(1.1)
    assert s.closed and s.local_bytes == 4


# -- gap ACK (RFC 7440 section 4) ------------------------------------------------------
def test_dropped_first_block_of_a_window_costs_no_timeout() -> None:
    """The receiver's gap ACK makes the sender resend the window at once: the transfer
    completes with the fake clock still at 0."""
    payload = random.Random(1).randbytes(512 * 40 + 7)
    result = simulate(payload, is_read=True, windowsize=8, drop_first_of_window=2)
    assert result.client.succeeded and result.received == payload
    # Both ends were done before the fake clock ever moved (only the dally came after).
    assert result.client.finished_at == 0.0 and result.server.finished_at == 0.0
    assert result.server.succeeded and result.server.retransmissions == 1


# -- client session against server session ---------------------------------------------
@dataclass
class Outcome:
    client: ClientSession
    server: ServerSession
    received: bytes
    clock: float = 0.0
    timer_events: int = 0
    most_sends_per_datagram: int = 0
    windowsize: int = 1
    data_sent: int = 0  # DATA packets the sending end emitted (before any loss)
    data_sent_on_timer: int = 0  # ... of them on a retransmission timeout
    log: list[str] = field(default_factory=list)


def simulate(
    payload: bytes,
    *,
    is_read: bool,
    windowsize: int,
    blksize: int = 512,
    rnd: random.Random | None = None,
    loss: float = 0.0,
    dup: float = 0.0,
    reorder: bool = False,
    drop_first_of_window: int | None = None,
    max_events: int = 400_000,
) -> Outcome:
    """Run a get (`is_read`) or put of `payload` between the two sessions. Datagrams
    sit in one in-flight list; each is lost, duplicated or delivered out of order as
    `rnd` decides. When nothing is in flight the fake clock jumps to the next deadline."""
    options = TransferOptions(blksize=blksize, windowsize=windowsize, retries=12, tsize=True)
    size = None if is_read else len(payload)
    c = ClientSession(SERVER, "f", is_read=is_read, options=options, now=0.0, local_size=size)
    rules = RequestRules(read_only=False, max_sessions=4)
    sessions: dict[Address, ServerSession] = {}
    sources = {CLIENT: io.BytesIO(b"" if is_read else payload), TID: io.BytesIO(payload)}
    received = io.BytesIO()
    flight: list[tuple[Address, Address, bytes]] = []
    outcome = Outcome(c, None, b"", windowsize=windowsize)  # type: ignore[arg-type]
    data_seen = 0

    def emit(src: Address, dst: Address | None, datagrams: list[bytes]) -> None:
        nonlocal data_seen
        assert dst is not None
        for d in datagrams:
            if d[1] == Opcode.DATA and windowsize > 1:
                block = int.from_bytes(d[2:4], "big")
                data_seen += 1
                if (
                    drop_first_of_window is not None
                    and block == 1 + windowsize * (drop_first_of_window - 1)
                    and data_seen == block
                ):
                    continue  # the first transmission of that block only
            if rnd is not None and rnd.random() < loss:
                continue
            flight.append((src, dst, d))
            if rnd is not None and rnd.random() < dup:
                flight.append((src, dst, d))

    def run(
        session: ClientSession | ServerSession,
        me: Address,
        step: Step,
        now: float,
        on_timer: bool = False,
    ) -> int:
        sent = len(step.send)
        data = sum(1 for d in step.send if d[1] == Opcode.DATA)
        outcome.data_sent += data
        if on_timer:
            outcome.data_sent_on_timer += data
        if step.data:
            received.write(step.data)
        emit(me, session.dest, step.send)
        for d, addr in session.take_stray():
            emit(me, addr, [d])
        while (wanted := session.wanted) > 0:
            chunk = sources[me].read(max(wanted, 4096))
            session.feed(chunk, not chunk)
        if session.pending_start:
            sent += run(session, me, session.begin_transfer(now), now, on_timer)
        return sent

    now = 0.0
    run(c, CLIENT, c.start(now), now)
    for _ in range(max_events):
        if flight:
            index = rnd.randrange(len(flight)) if rnd is not None and reorder else 0
            src, dst, datagram = flight.pop(index)
            if dst == CLIENT:
                sent = run(c, CLIENT, c.receive(datagram, src, now), now)
            elif dst == SERVER:
                verdict = rules.check(datagram, src)
                if rules.key(datagram, src) in rules.active:
                    # The client repeated its request: our first packet was lost (what
                    # TftpServer does with a request of a running transfer).
                    s = sessions[TID]
                    sent = run(s, TID, s.repeat_request(now), now, on_timer=True)
                elif isinstance(verdict, Request):
                    assert not sessions, "a duplicate request started a second transfer"
                    rules.started(rules.key(datagram, src))
                    s = ServerSession(
                        verdict,
                        src,
                        config=ServerConfig(Path("."), retries=12),
                        now=now,
                        file_size=len(payload) if is_read else None,
                    )
                    sessions[TID] = s
                    outcome.server = s
                    sent = run(s, TID, s.start(now), now)
                else:
                    sent = 0
            else:
                s = sessions[dst]
                sent = run(s, TID, s.receive(datagram, src, now), now)
            outcome.most_sends_per_datagram = max(outcome.most_sends_per_datagram, sent)
            continue
        live = [x for x in [c, *sessions.values()] if x.get_timer() is not None]
        if not live:
            break
        now = min(x.get_timer() for x in live)  # type: ignore[type-var]
        outcome.timer_events += 1
        for session in live:
            if session.get_timer() == now:
                me = CLIENT if session is c else TID
                run(session, me, session.handle_timer(now), now, on_timer=True)
    else:
        raise AssertionError("simulation did not finish")
    outcome.received = received.getvalue()
    outcome.clock = now
    return outcome


@settings(max_examples=60, deadline=None)
@given(
    is_read=st.booleans(),
    windowsize=st.one_of(st.just(1), st.integers(1, 64)),  # lock-step: half the runs
    blocks=st.integers(0, 40),
    delta=st.sampled_from([-1, 0, 1]),
    seed=st.integers(0, 2**32 - 1),
    loss=st.sampled_from([0.0, 0.05, 0.2]),
    dup=st.sampled_from([0.0, 0.1]),
    reorder=st.booleans(),
)
@example(
    is_read=True, windowsize=1, blocks=40, delta=0, seed=1, loss=0.0, dup=0.1, reorder=False
)  # duplicated ACKs in lock-step: the Sorcerer's Apprentice's home ground
@example(is_read=False, windowsize=1, blocks=40, delta=1, seed=2, loss=0.05, dup=0.1, reorder=True)
def test_sessions_over_a_bad_network(
    is_read: bool,
    windowsize: int,
    blocks: int,
    delta: int,
    seed: int,
    loss: float,
    dup: float,
    reorder: bool,
) -> None:
    size = max(0, blocks * 64 + delta)
    payload = random.Random(seed).randbytes(size)
    rnd = random.Random(seed)
    out = simulate(
        payload,
        is_read=is_read,
        windowsize=windowsize,
        blksize=64,
        rnd=rnd,
        loss=loss,
        dup=dup,
        reorder=reorder,
    )
    receiver = out.client if is_read else out.server
    sender = out.server if is_read else out.client
    assert receiver is not None and sender is not None
    # The receiver always gets the exact file; the sender either saw the last ACK or
    # (when every resend of the last block met a receiver done dallying) timed out.
    assert receiver.succeeded and out.received == payload, (receiver.error, len(out.received))
    assert sender.succeeded or isinstance(sender.error, TransferTimeout)
    if not sender.succeeded and size // 64 + 1 > windowsize:
        # Every block reached the receiver and it acknowledged a window before the last,
        # so the only thing the sender missed is the final window's ACK: its own kind of
        # failure (the boot log counts the file served), never a plain timeout.
        assert isinstance(sender.error, FinalAckLost), sender.error
    # No ACK storm: one datagram in never causes more than one window out.
    assert out.most_sends_per_datagram <= max(windowsize, 1)
    if windowsize == 1:
        # No Sorcerer's Apprentice: every block goes out once, plus one per timeout
        # (or repeated request). Answering duplicate ACKs (dup > 0) would send more,
        # without any single datagram ever causing more than one DATA.
        blocks = size // 64 + 1
        assert out.data_sent <= blocks + out.data_sent_on_timer, (
            out.data_sent,
            blocks,
            out.data_sent_on_timer,
        )


def test_rollover_between_sessions() -> None:
    """65,536 blocks and a few more: block numbers wrap to 0 on both ends."""
    payload = random.Random(7).randbytes(8 * 65_540 + 3)
    out = simulate(payload, is_read=True, windowsize=16, blksize=8, max_events=2_000_000)
    assert out.client.succeeded and out.received == payload and out.server.succeeded


@pytest.mark.parametrize(
    "module",
    [
        *("tftp.packets", "tftp.netascii", "tftp.options", "tftp.machine", "tftp.session"),
        *("tftp.errors", "paths"),
    ],
)
def test_pure_modules_import_no_io(module: str) -> None:
    """Sans-IO stays sans-IO: no sockets, clocks, event loops or temp files in the
    protocol modules (only driver.py, localfiles.py and the thin shells have them)."""
    import ast
    import importlib

    source = importlib.import_module(f"ptftpd.{module}").__file__
    assert source is not None
    tree = ast.parse(Path(source).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert not imported & {"socket", "time", "select", "asyncio", "tempfile", "selectors"}
