"""Transfer events from worker processes to the parent (service/transfer_events.py)."""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptftpd.events import Failure, TransferRefused, TransferStarted
from ptftpd.service.transfer_events import (
    WORKER_ENDED,
    EventDecodeError,
    EventReceiver,
    EventSender,
    decode,
    encode,
    event_pair,
)
from ptftpd.tftp.server import FinishedTransfer

texts = st.text(max_size=200)
finished = st.builds(
    FinishedTransfer,
    peer_ip=texts,
    filename=texts,
    is_read=st.booleans(),
    bytes=st.integers(min_value=-1, max_value=2**40),
    seconds=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    failure=st.none() | texts,
    kind=st.none() | st.sampled_from(Failure),
    code=st.none() | st.integers(min_value=0, max_value=0xFFFF),
    last_block=st.none() | st.integers(min_value=0, max_value=2**40),
    retransmissions=st.integers(min_value=0, max_value=10**6),
    blksize=st.none() | st.integers(min_value=8, max_value=65464),
)
options = st.lists(st.tuples(texts, texts), max_size=8).map(tuple)
events = (
    st.builds(TransferStarted, texts, texts, st.booleans(), options)
    | st.builds(
        TransferRefused,
        texts,
        texts,
        texts,
        st.sampled_from(Failure),
        st.integers(min_value=0, max_value=0xFFFF),
    )
    | finished
)


@given(events)
def test_every_event_survives_the_codec(
    event: TransferStarted | TransferRefused | FinishedTransfer,
) -> None:
    assert decode(encode(event)) == event


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"{}",
        b"[]",
        b'["s", "10.0.0.9"]',
        b'["s", "10.0.0.9", "a", 1]',
        b'["s", "10.0.0.9", "a", true]',
        b'["s", "10.0.0.9", "a", true, [["tsize"]]]',
        b'["s", "10.0.0.9", "a", true, [["tsize", 0]]]',
        b'["f", "10.0.0.9", "a", true, 1, 0.5, null, null, null, -1, 0, null]',
        b'["f", "10.0.0.9", "a", true, 1, 0.5, null, null, null, null, true, null]',
        b'["f", "10.0.0.9", "a", true, 1, 0.5, null, null, null, null, 0, "512"]',
        b'["f", "10.0.0.9", "a", "yes", 1, 0.5, null, null, null]',
        b'["f", "10.0.0.9", "a", true, true, 0.5, null, null, null]',
        b'["f", "10.0.0.9", "a", true, 1, 0.5, "x", "no_such_kind", 0]',
        b'["f", "10.0.0.9", "a", true, 1, 0.5, "x", "timeout", 70000]',
        b'["x", "10.0.0.9", "a"]',
        b'["r", "10.0.0.9", "a"]',
        b'["r", "10.0.0.9", "a", 2]',
        b'["r", "10.0.0.9", "a", "why", "not_found", null]',
    ],
)
def test_anything_else_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode(data)


def test_events_from_a_forked_worker_reach_the_parent_loop() -> None:
    receiving, sending = event_pair()
    pid = os.fork()
    if pid == 0:  # the "worker"
        code = 1
        try:
            receiving.close()
            sender = EventSender(sending)
            for n in range(50):
                sender.started(TransferStarted("10.0.0.9", f"file{n}"))
                sender.finished(FinishedTransfer("10.0.0.9", f"file{n}", True, n, 0.25, None))
            sender.refused(
                TransferRefused("10.0.0.9", "missing", "file not found", Failure.NOT_FOUND, 1)
            )
            code = 0 if sender.dropped == 0 else 3
        finally:
            os._exit(code)
    sending.close()
    started: list[TransferStarted] = []
    done: list[FinishedTransfer] = []
    refused: list[TransferRefused] = []

    async def collect() -> None:
        receiver = EventReceiver(receiving, started.append, done.append, refused.append)
        receiver.attach(asyncio.get_running_loop())
        try:
            for _ in range(500):  # bounded: 5 s at most
                if refused:
                    break
                await asyncio.sleep(0.01)
        finally:
            receiver.close()

    try:
        asyncio.run(collect())
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert started == [TransferStarted("10.0.0.9", f"file{n}") for n in range(50)]
    assert [d.bytes for d in done] == list(range(50))
    assert done[7] == FinishedTransfer("10.0.0.9", "file7", True, 7, 0.25, None)
    assert refused == [
        TransferRefused("10.0.0.9", "missing", "file not found", Failure.NOT_FOUND, 1)
    ]


def test_a_dead_worker_s_unfinished_transfers_end_as_cancelled() -> None:
    """The receiver knows each event's sender (SO_PASSCRED): a worker that dies
    mid-transfer still gets its transfers ended, as cancelled (not a failed boot)."""
    receiving, sending = event_pair()
    pid = os.fork()
    if pid == 0:  # the "worker": two transfers start, one ends, then it dies
        code = 1
        try:
            receiving.close()
            sender = EventSender(sending)
            sender.started(TransferStarted("10.0.0.9", "a"))
            sender.started(TransferStarted("10.0.0.8", "b"))
            sender.finished(FinishedTransfer("10.0.0.9", "a", True, 5, 0.25, None))
            code = 0
        finally:
            os._exit(code)
    sending.close()
    done: list[FinishedTransfer] = []
    receiver = EventReceiver(receiving, lambda started: None, done.append)
    try:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        receiver.worker_ended(os.getpid())  # another sender: nothing of its own
        assert [d.filename for d in done] == ["a"]
        receiver.worker_ended(pid)
    finally:
        receiver.close()
    assert done[1] == FinishedTransfer(
        "10.0.0.8", "b", True, 0, 0.0, WORKER_ENDED, Failure.SHUTDOWN
    )
    assert len(done) == 2
