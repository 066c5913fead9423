"""The asyncio listener of the operator API: the thin I/O shell around
`connection.ApiConnection` and the `routes.Router`.

Bounded by its `HttpConfig` (`api_config`): at most `max_connections` connections
(more are answered 503 and closed at once); a request must arrive whole within
`header_timeout` of its first byte, and a kept-alive connection may be idle
`idle_timeout`; each answer (and each event of a stream) must be taken by the peer
within `write_timeout`, else the connection is dropped. Handlers are plain functions
run in the loop: they must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace

from ptftpd.errors import StartError, bind_error
from ptftpd.http.config import HttpConfig
from ptftpd.http.errors import HttpError
from ptftpd.pxe.api.connection import API_DEFAULTS, CLOSED, ApiConnection, RawRequest
from ptftpd.pxe.api.events import Subscriber
from ptftpd.pxe.api.routes import Router, Stream, error_reply

__all__ = ["ApiServer", "api_config"]

log = logging.getLogger("ptftpd.pxe.api")

_READ_SIZE = 16 * 1024
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: 38\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    b'{"error":"too many connections open"}\n'
)


def api_config(bind: tuple[str, int], **changes: object) -> HttpConfig:
    """The API's listener settings at `bind`: `API_DEFAULTS` with `changes` (fields of
    `HttpConfig`)."""
    return replace(API_DEFAULTS, bind=(bind,), **changes)  # type: ignore[arg-type]


class ApiServer:
    def __init__(self, config: HttpConfig, router: Router) -> None:
        if len(config.bind) != 1:
            raise ValueError(f"the operator API listens on one address, not {config.bind}")
        self.config = config
        self.router = router
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.bound: tuple[str, int] | None = None
        self._busy = 0  # connections being turned away

    async def start(self) -> None:
        host, port = self.config.bind[0]
        try:
            self._server = await asyncio.start_server(
                self._accepted, host, port, reuse_address=True
            )
        except OSError as exc:
            hint = "run as root or choose a port above 1023"
            raise StartError(bind_error(exc, "TCP", host, port, hint)) from None
        sockname = self._server.sockets[0].getsockname()
        self.bound = (str(sockname[0]), int(sockname[1]))
        log.info("operator API on http://%s/", _netloc(*self.bound))

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._tasks) >= self.config.max_connections:
            self._busy += 1
            try:
                if self._busy <= self.config.max_connections:  # else: closed at once
                    writer.write(_BUSY)
                    await self._linger(reader, writer)
            finally:
                self._busy -= 1
                writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        conn = ApiConnection(cfg)
        while True:
            deadline: float | None = None
            while True:
                try:
                    item = conn.next_request()
                except HttpError as exc:
                    reply = error_reply(exc.status, exc.message)
                    head = [("Connection", "close")]
                    data = conn.answer(reply.status, reply.body, reply.content_type, head)
                    writer.write(data)
                    await self._linger(reader, writer)
                    return
                if item is CLOSED:
                    return
                if isinstance(item, RawRequest):
                    break
                if deadline is None and conn.has_partial_request:
                    deadline = loop.time() + cfg.header_timeout
                until = deadline if deadline is not None else loop.time() + cfg.idle_timeout
                async with asyncio.timeout_at(until):
                    data = await reader.read(_READ_SIZE)
                conn.receive(data)
            answer = await self.router.dispatch(item)
            if isinstance(answer, Stream):
                await self._stream(conn, reader, writer, answer.source, list(answer.headers))
                return
            headers = list(answer.headers)
            data = conn.answer(answer.status, answer.body, answer.content_type, headers)
            await self._write(writer, data)
            if not conn.next_cycle():
                return

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Before closing on a request we did not read whole: send what is written, end
        our side, and read (and drop) what the peer still sends for a moment, so the
        close is not a reset that destroys the answer. Bounded in bytes and time."""
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
                left = 256 * 1024
                while left > 0 and (data := await reader.read(_READ_SIZE)):
                    left -= len(data)

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        async with asyncio.timeout(self.config.write_timeout):
            await writer.drain()

    async def _stream(
        self,
        conn: ApiConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        subscriber: Subscriber,
        headers: list[tuple[str, str]],
    ) -> None:
        """Server-Sent Events until the peer goes, is too slow, or we stop."""
        headers = [("Cache-Control", "no-store"), ("X-Accel-Buffering", "no"), *headers]
        # The peer sends nothing more on a stream: a read ending means it went away.
        gone = asyncio.ensure_future(reader.read(1))
        try:
            head = conn.start_stream("text/event-stream; charset=utf-8", headers)
            await self._write(writer, head + conn.stream(b"retry: 2000\n\n"))
            while True:
                message = asyncio.ensure_future(subscriber.next(self.config.keepalive))
                await asyncio.wait((message, gone), return_when=asyncio.FIRST_COMPLETED)
                if not message.done():
                    message.cancel()
                    return
                data = message.result()
                if data is None:
                    log.info("API event stream dropped: the client did not keep up")
                    return
                await self._write(writer, conn.stream(data))
        finally:
            gone.cancel()
            subscriber.close()


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
