"""The sans-IO sender and receiver, driven against each other packet by packet."""

from __future__ import annotations

import hashlib
import random
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptftpd.tftp.machine import Receiver, Sender, State, Timer
from ptftpd.tftp.packets import Ack, Data, decode, error_bytes


def feed(sender: Sender, source: list[bytes]) -> None:
    while (n := sender.bytes_wanted) > 0:
        chunk = source[0][:n]
        source[0] = source[0][n:]
        sender.feed(chunk, eof=(not source[0] and len(chunk) < n) or not chunk)


def run_pair(
    payload: bytes,
    *,
    blksize: int,
    windowsize: int,
    drop: random.Random | None = None,
    loss: float = 0.0,
    max_events: int = 2_000_000,
) -> tuple[bytes, Sender, Receiver, int]:
    """Simulated network: FIFO links with optional random loss, timeouts when idle."""
    source = [payload]
    sender = Sender(blksize=blksize, windowsize=windowsize, retries=50)
    receiver = Receiver(blksize=blksize, windowsize=windowsize, retries=50)
    to_receiver: deque[bytes] = deque()
    to_sender: deque[bytes] = deque()
    received: list[bytes] = []
    sent_count = 0

    def lossy(link: deque[bytes], datagrams: list[bytes]) -> None:
        nonlocal sent_count
        for d in datagrams:
            sent_count += 1
            if drop is None or drop.random() >= loss:
                link.append(d)

    feed(sender, source)
    receiver.start()
    lossy(to_receiver, sender.start().send)
    for _ in range(max_events):
        if receiver.state is State.COMPLETE and sender.state is State.DONE:
            break
        if to_receiver:
            step = receiver.receive(to_receiver.popleft())
            received.append(step.data)
            lossy(to_sender, step.send)
        elif to_sender:
            lossy(to_receiver, sender.receive(to_sender.popleft()).send)
            feed(sender, source)
        else:
            # Idle link: both retransmission timers expire.
            assert sender.state is not State.FAILED and receiver.state is not State.FAILED
            if sender.state is State.ACTIVE:
                lossy(to_receiver, sender.timeout().send)
                feed(sender, source)
            if receiver.state is State.ACTIVE:
                lossy(to_sender, receiver.timeout().send)
            if receiver.state is State.COMPLETE and sender.state is State.ACTIVE:
                # The final ACK got lost: the sender's resend meets the dallying receiver.
                continue
    else:
        raise AssertionError("simulation did not finish")
    return b"".join(received), sender, receiver, sent_count


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 1024, 5000])
@pytest.mark.parametrize("windowsize", [1, 4, 16])
def test_lossless_sizes(size: int, windowsize: int) -> None:
    data = bytes(random.Random(size).getrandbits(8) for _ in range(size))
    out, sender, _, sent = run_pair(data, blksize=512, windowsize=windowsize)
    assert out == data
    assert sender.bytes_acked == size
    blocks = size // 512 + 1
    # No retransmissions at all on a perfect link, and one ACK per window.
    assert sender.retransmissions == 0
    assert sent == blocks + -(-blocks // windowsize)


def test_block_number_rollover() -> None:
    # 70000 blocks of 8 bytes: block numbers wrap past 65535 to 0.
    data = hashlib.sha256(b"x").digest() * (70000 * 8 // 32) + b"tail"
    out, sender, _, _ = run_pair(data, blksize=8, windowsize=8)
    assert out == data and sender.blocks_acked == 70001


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 6000),
    st.sampled_from([8, 512]),
    st.integers(1, 8),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0.05, 0.2, 0.4]),
)
def test_lossy_link_delivers_exact_bytes(
    size: int, blksize: int, windowsize: int, seed: int, loss: float
) -> None:
    data = random.Random(seed).randbytes(size)
    out, _, _, _ = run_pair(
        data, blksize=blksize, windowsize=windowsize, drop=random.Random(seed), loss=loss
    )
    assert out == data


def test_duplicate_ack_does_not_resend() -> None:
    """Sorcerer's Apprentice: a delayed duplicate ACK must not trigger a send."""
    sender = Sender(blksize=8, windowsize=1)
    sender.feed(b"x" * 40, eof=True)
    assert decode(sender.start().send[0]) == Data(1, b"x" * 8)
    step = sender.receive(Ack(1).encode())
    assert [decode(d) for d in step.send] == [Data(2, b"x" * 8)]
    dup = sender.receive(Ack(1).encode())
    assert dup.send == [] and dup.timer is Timer.KEEP
    assert sender.receive(Ack(7).encode()).send == []  # ACK of an unsent block


def test_window_resends_from_last_ack() -> None:
    sender = Sender(blksize=8, windowsize=4)
    sender.feed(b"a" * 8 * 10, eof=True)
    first = [decode(d) for d in sender.start().send]
    assert [p.block for p in first] == [1, 2, 3, 4]  # type: ignore[union-attr]
    # Receiver lost block 3: it ACKs 2; the next window starts at 3.
    again = [decode(d) for d in sender.receive(Ack(2).encode()).send]
    assert [p.block for p in again] == [3, 4, 5, 6]  # type: ignore[union-attr]
    timed = [decode(d) for d in sender.timeout().send]
    assert [p.block for p in timed] == [3, 4, 5, 6]  # type: ignore[union-attr]


def test_gap_ack_resends_the_window_at_once_but_only_once() -> None:
    """RFC 7440 section 4: an ACK of the block before the window (the receiver saw a
    later block first) resends the window now; a second copy of it does nothing."""
    sender = Sender(blksize=8, windowsize=4)
    sender.feed(b"a" * 8 * 10, eof=True)
    sender.start()
    sender.receive(Ack(4).encode())  # window 5..8 goes out
    again = sender.receive(Ack(4).encode())
    assert [p.block for p in map(decode, again.send)] == [5, 6, 7, 8]  # type: ignore[union-attr]
    assert again.timer is Timer.RESTART and sender.retransmissions == 1
    assert sender.receive(Ack(4).encode()).send == []  # no storm from duplicates
    assert [p.block for p in map(decode, sender.timeout().send)] == [5, 6, 7, 8]  # type: ignore[union-attr]
    assert len(sender.receive(Ack(4).encode()).send) == 4  # a new round after the timer


def test_sender_gives_up_after_retries() -> None:
    sender = Sender(blksize=8, retries=3)
    sender.feed(b"abc", eof=True)
    sender.start()
    for _ in range(3):
        assert sender.timeout().send
    step = sender.timeout()
    assert step.send == [] and step.timer is Timer.CANCEL and sender.state is State.FAILED


def test_oack_first_then_ack0() -> None:
    sender = Sender(blksize=8, first_packet=b"\x00\x06blksize\x008\x00")
    sender.feed(b"", eof=True)
    assert sender.start().send == [b"\x00\x06blksize\x008\x00"]
    assert sender.timeout().send == [b"\x00\x06blksize\x008\x00"]
    assert sender.receive(Ack(1).encode()).send == []
    assert [decode(d) for d in sender.receive(Ack(0).encode()).send] == [Data(1, b"")]
    assert sender.receive(Ack(1).encode()).timer is Timer.CANCEL and sender.state is State.DONE


def test_peer_error_fails_machine() -> None:
    receiver = Receiver()
    receiver.start()
    receiver.receive(error_bytes(8, "option refused"))
    assert receiver.state is State.FAILED and receiver.peer_error is not None
    assert receiver.peer_error.code == 8


def test_garbage_is_ignored() -> None:
    receiver = Receiver(blksize=8)
    receiver.start()
    for junk in (b"", b"\x00", b"\x00\x09zz", b"\xff\xff\xff\xff"):
        assert receiver.receive(junk).send == []
    assert receiver.state is State.ACTIVE
    assert receiver.receive(Data(1, b"abc").encode()).send == [Ack(1).encode()]


def test_receiver_dally_reacks_final_block() -> None:
    receiver = Receiver(blksize=8)
    receiver.start()
    final = Data(1, b"end").encode()
    assert receiver.receive(final).send == [Ack(1).encode()]
    assert receiver.state is State.COMPLETE
    assert receiver.receive(final).send == [Ack(1).encode()]
    assert receiver.timeout().timer is Timer.CANCEL and receiver.state is State.DONE


def test_receiver_acks_window_and_gap_once() -> None:
    receiver = Receiver(blksize=8, windowsize=4)
    receiver.start()
    steps = [receiver.receive(Data(b, b"x" * 8).encode()) for b in (1, 2, 3, 4)]
    assert [s.send for s in steps] == [[], [], [], [Ack(4).encode()]]
    assert receiver.receive(Data(6, b"x" * 8).encode()).send == [Ack(4).encode()]
    assert receiver.receive(Data(7, b"x" * 8).encode()).send == []  # one ACK per gap
    assert receiver.receive(Data(5, b"y" * 8).encode()).data == b"y" * 8


def _replay(machine: Receiver, batches: list[list[bytes]], many: bool) -> tuple[list[bytes], bytes]:
    sent: list[bytes] = []
    data = b""
    for batch in batches:
        if many:
            step = machine.receive_many(batch)
            sent += step.send
            data += step.data
        else:
            for datagram in batch:
                step = machine.receive(datagram)
                sent += step.send
                data += step.data
    return sent, data


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 6),
    st.lists(
        st.tuples(st.integers(0, 12), st.integers(0, 8), st.booleans()), min_size=1, max_size=40
    ),
    st.lists(st.integers(1, 5), min_size=1, max_size=10),
)
def test_receive_many_matches_one_by_one(
    windowsize: int, packets: list[tuple[int, int, bool]], cuts: list[int]
) -> None:
    """A window read in one go (UDP GRO) gives the same ACKs, bytes and state."""
    datagrams = [
        Data(block, bytes([block]) * (8 if full else length % 8)).encode() if block else b"\x00"
        for block, length, full in packets
    ]
    batches: list[list[bytes]] = []
    i = 0
    for cut in cuts * 10:
        if i >= len(datagrams):
            break
        batches.append(datagrams[i : i + cut])
        i += cut
    one = Receiver(blksize=8, windowsize=windowsize)
    many = Receiver(blksize=8, windowsize=windowsize)
    one.start()
    many.start()
    assert _replay(one, batches, False) == _replay(many, batches, True)
    assert (one.state, one.bytes_received) == (many.state, many.bytes_received)
