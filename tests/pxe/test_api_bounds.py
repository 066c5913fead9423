"""Issue 23 item 3: the operator API's route table, token auth and bounds, over real
sockets on loopback (curl and raw sockets against an `ApiServer` in this process, its
timeline fed typed events)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from ipaddress import IPv4Address

from ptftpd.events import DhcpMessage
from ptftpd.pxe.api import (
    ApiRequest,
    ApiServer,
    EventHub,
    Reply,
    Router,
    add_boot_routes,
    api_config,
    json_reply,
    machine_key,
)
from ptftpd.pxe.timeline import Timeline
from ptftpd.pxe.timeline_driver import TimelineDriver
from support import require_tool

TOKEN = "s3cret-token-0123456789"


async def curl(*args: str) -> tuple[int, dict[str, object], str]:
    """(status, JSON body, headers) of one curl request."""
    proc = await asyncio.create_subprocess_exec(
        require_tool("curl"), "-s", "-D", "-", "-w", "\n%{http_code}", *args,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    text, _, code = out.decode().rpartition("\n")
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    return int(code), json.loads(body), head


def serve(
    token: list[str | None], **config: object
) -> tuple[TimelineDriver, EventHub, Router, ApiServer]:
    driver = TimelineDriver(Timeline())
    hub = EventHub(driver, max_subscribers=2, max_bytes=1 << 20)
    router = Router(token=lambda: token[0])
    add_boot_routes(router, driver, hub)

    def local(request: ApiRequest) -> Reply:
        return json_reply({"local": machine_key(request.params["mac"]), "body": request.json()})

    router.add("POST", "/v1/machines/{mac}/local", local, write=True)
    server = ApiServer(api_config(("127.0.0.1", 0), **config), router)
    return driver, hub, router, server


def test_write_routes_need_the_token_and_are_off_without_one() -> None:
    token: list[str | None] = [None]
    _, _, _, server = serve(token)

    async def run() -> None:
        await server.start()
        assert server.bound is not None
        url = f"http://127.0.0.1:{server.bound[1]}/v1/machines/52:54:00:12:34:56/local"
        post = ("-X", "POST", "--data", '{"why": "disk"}', url)
        code, body, _ = await curl(*post)
        assert (code, body) == (
            403,
            {"error": "write endpoints are off: no api-token is configured"},
        )
        token[0] = TOKEN  # a reload sets one: read per request
        code, body, head = await curl(*post)
        assert code == 401 and 'www-authenticate: bearer realm="pxed"' in head.lower(), head
        code, _, _ = await curl("-H", "Authorization: Bearer wrong-token-0123456789", *post)
        assert code == 401
        code, body, _ = await curl("-H", f"Authorization: Bearer {TOKEN}", *post)
        assert (code, body) == (200, {"local": "52:54:00:12:34:56", "body": {"why": "disk"}})
        code, body, head = await curl(url)  # GET on a POST route
        assert code == 405 and "allow: post" in head.lower()
        server.close()

    asyncio.run(run())


async def _exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def test_request_bounds_headers_body_time_and_connections() -> None:
    _, _, _, server = serve(
        [TOKEN], max_headers=8, max_body=1024, header_timeout=0.5, max_connections=3
    )

    async def run() -> None:
        await server.start()
        assert server.bound is not None
        port = server.bound[1]
        many = b"".join(b"X-%d: y\r\n" % n for n in range(9))
        answer = await _exchange(port, b"GET /v1/boots HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 431 "), answer
        big = b"POST /v1/machines/52:54:00:12:34:56/local HTTP/1.1\r\nHost: a\r\n"
        answer = await _exchange(port, big + b"Content-Length: 5000\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        # Half a request, then nothing: the connection goes after header_timeout.
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await _exchange(port, b"GET /v1/boots HTTP/1.1\r\nHo", timeout=5)
        assert answer == b"" and 0.4 < loop.time() - started < 3
        # Three idle connections held: the fourth is turned away at once.
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await asyncio.sleep(0.1)
        answer = await _exchange(port, b"GET /v1/boots HTTP/1.1\r\nHost: a\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        for _, writer in held:
            writer.close()
        await asyncio.sleep(0.1)
        answer = await _exchange(
            port, b"GET /v1/boots HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        server.close()

    asyncio.run(run())


def test_a_slow_event_subscriber_is_dropped_not_buffered_for() -> None:
    """A client that opens /v1/events and never reads: once the socket buffers are
    full, its bounded queue overflows and it is dropped; the hub holds nobody after."""
    driver, hub, _, server = serve([None], write_timeout=30.0)

    async def run() -> None:
        await server.start()
        assert server.bound is not None
        port = server.bound[1]
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", port))
        slow.sendall(b"GET /v1/events HTTP/1.1\r\nHost: a\r\n\r\n")
        fast = await asyncio.create_subprocess_exec(
            require_tool("curl"), "-sN", f"http://127.0.0.1:{port}/v1/events",
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            if len(hub.subscribers) == 2:
                break
            await asyncio.sleep(0.05)
        assert len(hub.subscribers) == 2
        slow_one = hub.subscribers[0]
        # A third is refused: at most two streams (this hub's bound).
        code, body, _ = await curl(f"http://127.0.0.1:{port}/v1/events")
        assert (code, body) == (503, {"error": "too many event streams open"})
        for n in range(3000):  # distinct machines: one message each per batch
            mac = f"52:54:00:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}"
            driver.feed(DhcpMessage("in", "discover", mac, vendor_class="PXEClient" + "x" * 4000))
            driver.feed(DhcpMessage("out", "offer", mac, IPv4Address("10.0.0.5")))
            if n % 100 == 99:
                await asyncio.sleep(0.12)  # let batches go out
        for _ in range(100):
            if slow_one.dropped:
                break
            await asyncio.sleep(0.05)
        assert slow_one.dropped and slow_one not in hub.subscribers
        assert slow_one.queue == {} and slow_one.pending == 0
        assert len(hub.subscribers) == 1  # the fast one (curl) kept up
        fast.kill()
        await fast.wait()
        slow.close()
        server.close()

    asyncio.run(run())


def test_event_streams_take_the_filters_of_boots() -> None:
    """/v1/events?mac=...&state=...: only records that match (curl reads the stream);
    a bad filter is 400 before any stream opens."""
    driver, hub, _, server = serve([None])

    async def run() -> None:
        await server.start()
        assert server.bound is not None
        url = f"http://127.0.0.1:{server.bound[1]}/v1/events"
        code, body, _ = await curl(url + "?state=done")
        assert code == 400 and "state" in str(body["error"])
        stream = await asyncio.create_subprocess_exec(
            require_tool("curl"), "-sN", url + "?mac=52-54-00-00-00-02&state=in_progress",
            stdout=subprocess.PIPE,
        )  # fmt: skip
        for _ in range(100):
            if hub.subscribers:
                break
            await asyncio.sleep(0.05)
        for mac in ("52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"):
            driver.feed(DhcpMessage("in", "discover", mac, vendor_class="PXEClient"))
        await asyncio.sleep(0.3)
        driver.feed(DhcpMessage("out", "nak", "52:54:00:00:00:02"))  # now failed: filtered out
        await asyncio.sleep(0.3)
        stream.kill()
        out, _ = await stream.communicate()
        records = [
            json.loads(line[6:]) for line in out.decode().splitlines() if line.startswith("data: ")
        ]
        assert [(r["mac"], r["state"]) for r in records] == [("52:54:00:00:00:02", "in_progress")]
        server.close()

    asyncio.run(run())


def test_big_answers_and_storm_batches_leave_the_event_loop_free() -> None:
    """1,000 views (about 0.1 s of work) are built 50 at a time with the loop free
    between: a task beside them gets its turns during /v1/boots?limit=1000 and during
    the event stream's batch of 1,000 changed attempts (counted turns, not times)."""
    from ptftpd.pxe.api.boots import CHUNK
    from ptftpd.pxe.api.connection import RawRequest

    driver, hub, router, _ = serve([None])
    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async def run() -> None:
        for n in range(1200):
            mac = f"52:54:00:00:{n >> 8:02x}:{n & 255:02x}"
            driver.feed(DhcpMessage("in", "discover", mac, vendor_class="PXEClient"))
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = turns
        answer = await router.dispatch(RawRequest("GET", "/v1/boots?limit=1000", (), b""))
        assert isinstance(answer, Reply) and len(json.loads(answer.body)["boots"]) == 1000
        assert turns - before >= 1000 // CHUNK - 1, turns - before
        subscriber = hub.subscribe(lambda view: True)
        assert subscriber is not None
        before = turns
        hub._changed(driver.timeline.attempts()[:1000])
        assert hub._task is not None
        await hub._task
        assert turns - before >= 1000 // CHUNK - 1, turns - before
        assert len(subscriber.queue) == 1000
        subscriber.close()
        task.cancel()

    asyncio.run(run())
