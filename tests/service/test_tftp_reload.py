"""ptftpd re-reads its --config file on SIGHUP (issue 11, item 4), with and without workers.

A running transfer keeps going byte-identical; new requests see the new limits (blksize
maximum, read-only, max sessions shared by every worker); what only a restart can change
(the port...) is named and kept; a broken file is one error line and nothing changes.
Real peers where one fits: tftp-hpa's client uploads; option negotiation is read from the
OACK on a raw socket, the only place the granted blksize is visible.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import slow_tftp

from ptftpd.tftp.packets import Data, Error, Opcode, OptionAck, Request, ack_bytes, decode
from service.test_service_tftp import (
    BOTH_WORKERS,
    FILE,
    WORKERS,
    ptftpd,
    reload_and_wait,
    root,
    served_by,
    tftp_hpa,
    until_both_workers_served,
)
from support import free_udp_port

__all__ = ["root"]  # the served-directory fixture, shared with test_service_tftp


@dataclass
class Negotiated:
    blksize: int | None  # None: no OACK (or an ERROR)
    data: bytes
    error: tuple[int, str] | None


def read_asking_blksize(port: int, name: str, blksize: int) -> Negotiated:
    """Download `name` asking for `blksize` (RFC 2348); what the server granted, and the
    bytes. Bounded by the socket timeout."""
    request = Request(Opcode.RRQ, name, "octet", (("blksize", str(blksize)),))
    granted: int | None = None
    size = 512
    data = bytearray()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(request.encode(), ("127.0.0.1", port))
        expected = 1
        for _ in range(10_000):
            datagram, peer = sock.recvfrom(65536)
            packet = decode(datagram)
            if isinstance(packet, Error):
                return Negotiated(granted, bytes(data), (packet.code, packet.message))
            if isinstance(packet, OptionAck):
                granted = size = int(dict(packet.options)["blksize"])
                sock.sendto(ack_bytes(0), peer)
            elif isinstance(packet, Data) and packet.block == expected:
                data += packet.data
                sock.sendto(ack_bytes(packet.block), peer)
                expected += 1
                if len(packet.data) < size:
                    return Negotiated(granted, bytes(data), None)
    raise AssertionError("transfer did not end")


@WORKERS
def test_sighup_rereads_the_config_file_without_dropping_a_transfer(
    root: Path, tmp_path: Path, notify_socket: tuple[socket.socket, str], workers: int
) -> None:
    listener, path = notify_socket
    root.chmod(0o777)  # uploads, once the reload allows them
    conf = tmp_path / "ptftpd.toml"
    conf.write_text("read-only = true\nblksize-max = 512\n")
    port = free_udp_port()
    env = {**os.environ, "NOTIFY_SOCKET": path}
    server = ptftpd(
        root,
        "-p",
        str(port),
        "--config",
        str(conf),
        log=tmp_path / "s.log",
        workers=workers,
        env=env,
    )
    assert listener.recv(4096) == b"READY=1"
    work = tmp_path / "client"
    work.mkdir()
    upload = bytes(range(251)) * 40
    (work / "up.bin").write_bytes(upload)

    def reload() -> None:
        reload_and_wait(server, listener)

    def at_block(n: int) -> None:
        if n == 10:
            # port: the -p flag wins over the file, so no change; drain: a restart's
            conf.write_text(
                "read-only = false\nblksize-max = 1024\nmax-sessions = 2\ndrain = 3\n"
                f"port = {port + 1}\n"
            )
            reload()

    try:
        # The file's settings at start: read-only, blocks of at most 512.
        assert "read-only" in tftp_hpa(None, port, "put", "up.bin", cwd=work)
        assert not (root / "up.bin").exists()
        assert read_asking_blksize(port, "boot.bin", 1428).blksize == 512

        got = slow_tftp.read("127.0.0.1", port, "boot.bin", delay=0.01, on_block=at_block)
        assert got.error is None and got.data == FILE

        # New requests, in every worker, see the re-read file.
        mark = len(server.output())
        granted: set[int | None] = set()

        def download() -> None:
            new = read_asking_blksize(port, "boot.bin", 1428)
            assert new.error is None and new.data == FILE
            granted.add(new.blksize)

        download()
        if workers > 1:
            assert until_both_workers_served(server, download, mark) == BOTH_WORKERS
        assert granted == {1024}
        tftp_hpa(None, port, "put", "up.bin", cwd=work)
        assert (root / "up.bin").read_bytes() == upload
        reloaded = [line for line in server.output().splitlines() if "reloaded: " in line]
        assert "max sessions 2, blksize max 1024" in reloaded[-1], reloaded
        assert "uploads allowed; kept until a restart: drain" in reloaded[-1], reloaded

        # max-sessions = 2 holds across the workers: two slow transfers run, the next
        # request (whichever worker takes it) is refused.
        started = [threading.Event(), threading.Event()]
        held: list[slow_tftp.Result] = []

        def slow(running: threading.Event) -> None:
            for _ in range(40):  # the upload's session may still dally for a while
                got = slow_tftp.read(
                    "127.0.0.1", port, "boot.bin", delay=0.03, on_block=lambda n: running.set()
                )
                if got.error is None:
                    break
                time.sleep(0.25)
            held.append(got)

        holders = [threading.Thread(target=slow, args=(event,)) for event in started]
        for holder in holders:
            holder.start()
        assert all(event.wait(20) for event in started)
        refused = [slow_tftp.read("127.0.0.1", port, "boot.bin", timeout=5) for _ in range(4)]
        for holder in holders:
            holder.join(60)
        assert [r.data for r in held] == [FILE, FILE]
        assert all(r.error == (0, "server busy, try again") for r in refused), refused

        # A broken file: one error line, the running settings stay.
        conf.write_text('blksize-max = "big"\n')
        reload()
        assert read_asking_blksize(port, "boot.bin", 1428).blksize == 1024
        assert server.proc.poll() is None
    finally:
        assert server.stop() == 0, server.output()
    log = server.output()
    assert log.count("reload failed, keeping the running settings") == 1, log
    assert "blksize-max" in log.split("reload failed", 1)[1].splitlines()[0]
    if workers > 1:
        assert served_by(log[mark:]) == BOTH_WORKERS
