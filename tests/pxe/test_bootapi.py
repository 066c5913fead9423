"""Issue 22 item 2: the decision API client (``pxed --boot-api URL``) against a real
HTTP server answering in pixiecore's format (a threaded http.server on loopback):
the three URL forms and ``{{ ID }}``, a slow (5 s) and a down API -> the cached answer
within the deadline, 404 / 500 / broken JSON -> ignored (or, opted in, the default),
one log line each, many machines at once against a slow API -> none waits for another."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from ptftpd.pxe.bootapi import ApiFetcher, parse_answer, resolve
from ptftpd.pxe.decision import Decision, Kind, MachineFacts, Pending, Profile, Source
from ptftpd.pxe.recipes import render_ipxe

MAC = "52:54:00:22:02:01"


class Api:
    """What the test API answers per MAC: (delay seconds, status, body bytes)."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[float, int, bytes]] = {}
        self.asked: list[str] = []


def serve(api: Api) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            api.asked.append(self.path)
            mac = self.path.split("?")[0].rsplit("/", 1)[-1]
            delay, status, body = api.answers.get(mac, (0.0, 404, b"not found"))
            time.sleep(delay)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (the slow case)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 256

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/api"


@pytest.fixture
def api() -> Iterator[tuple[Api, str, ThreadingHTTPServer]]:
    state = Api()
    server, url = serve(state)
    yield state, url, server
    server.shutdown()
    server.server_close()


def facts(mac: str = MAC) -> MachineFacts:
    return MachineFacts(
        mac=mac,
        server="10.0.0.1",
        ip=IPv4Address("10.0.0.50"),
        arch=7,
        vendor_class="PXEClient:Arch:00007",
        subnet=IPv4Network("10.0.0.0/24"),
        http_base="http://10.0.0.1:8080",
        ipxe=True,
    )


def test_pixiecores_three_url_forms_and_id_in_the_cmdline(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "deb").mkdir(parents=True)
    answer = {
        "kernel": "http://files.example/vmlinuz",
        "initrd": ["initrd.img", f"file://{root}/deb/extra.img"],
        "cmdline": 'console=ttyS0 ks={{ ID "ks.cfg" }} seed={{ ID "file://'
        + str(root)
        + '/deb/seed" }}',
        "message": "installing",
    }
    d = parse_answer(json.dumps(answer).encode(), "http://api.example/pxe/", root, {})
    assert (d.kind, d.source) == (Kind.BOOT, Source.API)
    assert d.profile is not None
    assert d.profile.kernel == "http://files.example/vmlinuz"
    assert d.profile.initrd == ("http://api.example/pxe/initrd.img", "deb/extra.img")
    script = render_ipxe(d.profile, facts()).decode()
    assert "initrd --name initrd1 http://10.0.0.1:8080/deb/extra.img" in script
    assert (
        "kernel http://files.example/vmlinuz initrd=initrd0 initrd=initrd1 console=ttyS0 "
        "ks=http://api.example/pxe/ks.cfg seed=http://10.0.0.1:8080/deb/seed" in script
    ), script
    for bad in (f"file://{tmp_path}/secret", "file:///etc/shadow", "ftp://x/y", "a b"):
        with pytest.raises(ValueError):
            resolve(bad, "http://api.example/pxe/", root)
    script_answer = {"ipxe-script": "#!ipxe\necho hi\n"}
    d = parse_answer(json.dumps(script_answer).encode(), "http://a/", root, {})
    assert d.profile is not None and d.profile.ipxe_script == "#!ipxe\necho hi\n"
    assert parse_answer(b'{"local": true}', "http://a/", root, {}).kind is Kind.LOCAL
    debian = Profile("debian", kernel="k")
    assert (
        parse_answer(b'{"profile": "debian"}', "http://a/", root, {"debian": debian}).profile
        is debian
    )
    broken_answers = [b"{", b"[]", b"{}", b'{"profile": "nope"}', b'{"kernel": "k\\nboot"}']
    broken_answers += [b'{"kernel": "k", "initrd": "x"}', b'{"kernel": "k", "cmdline": "a\\nb"}']
    for broken in broken_answers:
        with pytest.raises(ValueError):
            parse_answer(broken, "http://a/", root, {})


async def settle(fetcher: ApiFetcher, f: MachineFacts, clock: Any) -> tuple[Decision | None, float]:
    """Ask as a driver does: again when the answer came or the deadline passed; the
    decision and how long it took."""
    began = clock()
    while True:
        answer = fetcher.api.decide(f, clock())
        if not isinstance(answer, Pending):
            return answer, clock() - began
        await asyncio.sleep(0.02)


def good(kernel: str = "vmlinuz") -> bytes:
    return json.dumps({"kernel": kernel, "cmdline": "x=1"}).encode()


def test_a_slow_or_down_api_gives_the_cached_answer_within_the_deadline(
    api: tuple[Api, str, ThreadingHTTPServer], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state, url, server = api
    clock = time.monotonic

    async def run() -> None:
        fetcher = ApiFetcher(url, tmp_path, dict, clock, deadline=1.0)
        state.answers[MAC] = (0.0, 200, good("first"))
        decision, took = await settle(fetcher, facts(), clock)
        assert decision is not None and decision.source is Source.API and took < 1.0
        assert decision.profile is not None and decision.profile.kernel == f"{url}/first"
        asked = state.asked[-1]
        assert asked.startswith("/api/v1/boot/52:54:00:22:02:01?arch=7&")
        assert "ip=10.0.0.50" in asked and "subnet=10.0.0.0%2F24" in asked
        assert "vendor-class=PXEClient%3AArch%3A00007" in asked
        fetcher.api.recent.clear()  # the machine's next boot
        state.answers[MAC] = (5.0, 200, good("second"))
        decision, took = await settle(fetcher, facts(), clock)
        assert decision is not None and decision.source is Source.CACHE, decision
        assert decision.profile is not None and decision.profile.kernel == f"{url}/first"
        assert 0.9 < took < 1.3, took
        fetcher.close()
        server.shutdown()
        server.server_close()
        fetcher.api.recent.clear()
        fetcher.api.inflight.clear()
        decision, took = await settle(fetcher, facts(), clock)
        assert decision is not None and decision.source is Source.CACHE, decision
        assert took < 1.0
        other, _ = await settle(fetcher, facts("52:54:00:22:02:09"), clock)
        assert other is None  # nothing cached: the link steps aside

    with caplog.at_level(logging.INFO, "ptftpd.pxe"):
        asyncio.run(run())
    assert any("its last answer stands in" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("opt_in", [False, True], ids=["ignore", "default"])
def test_404_500_and_broken_json_are_ignored_one_line_each(
    api: tuple[Api, str, ThreadingHTTPServer],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    opt_in: bool,
) -> None:
    state, url, _ = api
    cases = {
        "52:54:00:22:02:11": (0.0, 404, b'{"error": "unknown"}'),
        "52:54:00:22:02:12": (0.0, 500, b"oops"),
        "52:54:00:22:02:13": (0.0, 200, b'{"kernel": '),
    }
    state.answers.update(cases)

    async def run() -> list[Decision | None]:
        fetcher = ApiFetcher(url, tmp_path, dict, time.monotonic, unknown_to_default=opt_in)
        fetcher.api.cache.update({m: Decision(Kind.LOCAL, Source.API) for m in cases})
        found = [(await settle(fetcher, facts(m), time.monotonic))[0] for m in cases]
        return found

    with caplog.at_level(logging.INFO, "ptftpd.pxe"):
        found = asyncio.run(run())
    if opt_in:
        assert found == [None, None, None]
    else:
        assert [d.kind if d else None for d in found] == [Kind.IGNORE] * 3
    for mac, why in zip(cases, ("HTTP 404", "HTTP 500", "malformed answer"), strict=True):
        lines = [r.getMessage() for r in caplog.records if mac in r.getMessage()]
        assert len(lines) == 1 and why in lines[0], lines


def test_machines_deciding_at_once_do_not_wait_for_each_other(
    api: tuple[Api, str, ThreadingHTTPServer], tmp_path: Path
) -> None:
    """50 machines against an API answering each in 0.5 s: all answered in about 0.5 s
    (serially it would be 25 s); a machine asking again while its request is in
    flight starts no second request."""
    state, url, _ = api
    macs = [f"52:54:00:22:03:{i:02x}" for i in range(50)]
    for mac in macs:
        state.answers[mac] = (0.5, 200, good())

    async def run() -> list[float]:
        fetcher = ApiFetcher(url, tmp_path, dict, time.monotonic, deadline=3.0)
        results = await asyncio.gather(*(settle(fetcher, facts(m), time.monotonic) for m in macs))
        assert all(d is not None and d.source is Source.API for d, _ in results)
        return [took for _, took in results]

    took = asyncio.run(run())
    assert max(took) < 2.0, sorted(took)[-5:]
    assert len(state.asked) == len(macs)


def test_requests_in_flight_are_bounded() -> None:
    """DISCOVERs with made-up MACs start at most max_in_flight requests; beyond, a
    machine with a cached answer gets it, others step aside (no request started)."""
    from ptftpd.pxe.bootapi import BootApi

    started: list[str] = []
    api = BootApi("http://a", lambda f: started.append(f.mac), max_in_flight=3)
    for i in range(3):
        assert isinstance(api.decide(facts(f"52:54:00:00:09:{i:02x}"), 0.0), Pending)
    api.cache[MAC] = Decision(Kind.LOCAL, Source.API)
    assert api.decide(facts("52:54:00:00:09:99"), 0.0) is None
    cached = api.decide(facts(MAC), 0.0)
    assert cached is not None and not isinstance(cached, Pending)
    assert cached.source is Source.CACHE
    assert len(started) == 3


def test_a_decision_asked_from_a_database_thread_starts_its_request_in_the_loop(
    api: tuple[Api, str, ThreadingHTTPServer], tmp_path: Path
) -> None:
    """With PostgreSQL leases the DHCP server decides in threads: the request still
    starts (in the loop the fetcher is attached to) and its answer arrives."""
    state, url, _ = api
    state.answers[MAC] = (0.0, 200, good())

    async def run() -> Decision | Pending | None:
        loop = asyncio.get_running_loop()
        fetcher = ApiFetcher(url, tmp_path, dict, time.monotonic)
        fetcher.attach(loop)
        first = await loop.run_in_executor(None, fetcher.api.decide, facts(), time.monotonic())
        assert isinstance(first, Pending)
        deadline = time.monotonic() + 5
        while MAC not in fetcher.api.recent:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        return await loop.run_in_executor(None, fetcher.api.decide, facts(), time.monotonic())

    answer = asyncio.run(run())
    assert isinstance(answer, Decision) and answer.source is Source.API


def test_held_requests_are_one_per_machine_bounded_and_fed_once() -> None:
    """pxed's held requests (`pxe.held`): a retransmission replaces its machine's held
    request, other machines beyond the limit are not held, each request comes back once
    (its decision, or its deadline) and is gone."""
    from ptftpd.pxe.held import HeldRequests

    held: HeldRequests[str] = HeldRequests(limit=2)
    assert held.hold("a", "a1", 10.0) and held.hold("a", "a2", 12.0)
    assert held.hold("b", "b1", 11.0)
    assert not held.hold("c", "c1", 11.0)  # the limit: other machines are not held
    assert held.next_deadline() == 11.0
    assert held.due(10.5) == []
    assert held.due(11.0) == ["b1"]
    assert held.take("a") == "a2" and held.take("a") is None
    assert held.due(100.0) == [] and held.next_deadline() is None


def test_a_decision_holds_for_its_exchange_and_a_discover_after_its_request_asks_again() -> None:
    """The same xid: retransmitted DISCOVERs and the REQUEST (even 15 s later, past
    the 10 s freshness) get the decision the machine was given, without a request to
    the API; a DISCOVER with that xid after the REQUEST (a machine whose xid is the
    same at every boot) is a new exchange and asks the API again."""
    import dataclasses

    from ptftpd.pxe.bootapi import BootApi, Outcome

    started: list[str] = []
    api = BootApi("http://a", lambda f: started.append(f.mac))
    discover = dataclasses.replace(facts(MAC), exchange=0x1234)
    request = dataclasses.replace(discover, requesting=True)
    assert isinstance(api.decide(discover, 0.0), Pending)
    given = Decision(Kind.LOCAL, Source.API)
    api.learned(MAC, Outcome(given, True), 0.3)
    assert api.decide(discover, 0.3) == given
    api.learned(MAC, Outcome(Decision(Kind.IGNORE, Source.API), True), 5.0)  # changed
    assert api.decide(discover, 9.0) == given  # a retransmission
    assert api.decide(request, 15.3) == given and api.decide(request, 16.0) == given
    assert started == [MAC]
    assert isinstance(api.decide(discover, 17.0), Pending)  # after its REQUEST: anew
    assert started == [MAC, MAC]
    other = dataclasses.replace(discover, exchange=0x9999)
    assert api.decide(other, 5.5) == Decision(Kind.IGNORE, Source.API)  # fresh, new xid
