"""Fuzz job for the operator API's request path (issue 23 item 3): valid HTTP requests
built from the API's own vocabulary with random fields (methods, paths near the real
routes, MAC-like segments, known and unknown query parameters with hostile values,
bearer headers, bodies, header counts), fed to the sans-IO connection and the route
table of a timeline holding a few attempts. Every request gets one well-defined answer:
a JSON body and a status of the API's set, never a 500 or an exception. Pure code,
bounded: a fixed number of examples."""

from __future__ import annotations

import asyncio
import json
from ipaddress import IPv4Address
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptftpd.events import DhcpMessage, TransferFinished, TransferStarted
from ptftpd.http.errors import HttpError
from ptftpd.pxe.api import EventHub, Router, Stream, add_boot_routes, json_reply
from ptftpd.pxe.api.connection import API_DEFAULTS, ApiConnection, RawRequest
from ptftpd.pxe.api.routes import ApiRequest, Reply
from ptftpd.pxe.timeline import Timeline
from ptftpd.pxe.timeline_driver import TimelineDriver

STATUSES = {200, 400, 401, 403, 404, 405, 503}
TOKEN = "fuzz-token-0123456789"
MACS = ["52:54:00:12:34:56", "52-54-00-12-34-56", "525400123456", "52:54:00:00:00:99"]
ODD = ["", " ", "%", "%zz", "%ff%fe", "..", "a/b", "²", "١٢", "1e999", "nan", "-1", "0",
       "99999999999999999999", "2026-12-04T09:00:00Z", "2026-12-04T09:00:00", "2026-13-45",
       "in_progress", "completed,stalled", "failed,", "ip 10.0.0.1", "\u00e9", "null"]  # fmt: skip


def router() -> Router:
    driver = TimelineDriver(Timeline(), clock=lambda: 100.0, wall=lambda: 1_796_371_300.0)
    ip = "10.0.0.5"
    driver.feed(DhcpMessage("in", "discover", MACS[0], vendor_class="PXEClient"))
    driver.feed(DhcpMessage("out", "ack", MACS[0], IPv4Address(ip)))
    driver.feed(TransferStarted(ip, "ipxe.efi"))
    driver.feed(TransferFinished(ip, "ipxe.efi", True, 100, 0.1, None))
    table = Router(token=lambda: TOKEN)
    add_boot_routes(table, driver, EventHub(driver, max_subscribers=1_000_000))

    def echo(request: ApiRequest) -> Reply:
        return json_reply({"body": request.json()})

    table.add("POST", "/v1/machines/{mac}/local", echo, write=True)
    return table


ROUTER = router()
text = st.one_of(st.sampled_from(ODD + MACS), st.text(max_size=30))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["GET"] * 6 + ["POST"] * 2 + ["PUT", "DELETE", "HEAD"]))
    segments = draw(
        st.lists(
            st.one_of(st.sampled_from(["v1", "boots", "machines", "events", "local", ""]), text),
            max_size=5,
        )
    )
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    if draw(st.integers(0, 4)):  # mostly the real routes, with random MACs and values
        route = draw(st.sampled_from(["/v1/boots", "/v1/events", "/v1/machines/{}", "/",
                                      "/v1/machines/{}/local"]))  # fmt: skip
        path = route.format(quote(draw(text), safe=""))
    params = draw(
        st.lists(
            st.tuples(st.sampled_from(["mac", "state", "since", "limit", "x"]), text),
            min_size=draw(st.sampled_from([0, 1, 1, 2])),
            max_size=4,
        )
    )
    query = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in params)
    target = path + ("?" + query if query or draw(st.booleans()) else "")
    headers = [("Host", "127.0.0.1")]
    auth = draw(st.sampled_from([None, TOKEN, "wrong", "", TOKEN + "x"]))
    if auth is not None:
        headers.append(("Authorization", draw(st.sampled_from(["Bearer ", "bearer ", "Basic "]))
                        + auth))  # fmt: skip
    lines = draw(st.one_of(st.integers(0, 4), st.integers(0, 4), st.integers(60, 70)))
    headers += [(f"X-{n}", "v" * draw(st.integers(0, 50))) for n in range(lines)]
    bodies = [b"", b"", b"", b"{}", b'{"a": [1, 2]}', b"not json", b"\xff\xfe", b"x" * 70_000]
    body = draw(st.sampled_from(bodies)) if method != "GET" or draw(st.integers(0, 5)) == 0 else b""
    if body or method == "POST":
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("utf-8") + b"\r\n" + body


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_every_api_request_gets_one_json_answer(raw: bytes) -> None:
    conn = ApiConnection(API_DEFAULTS)
    conn.receive(raw)
    try:
        request = conn.next_request()
    except HttpError as exc:
        assert exc.status in {400, 413, 414, 431}, exc
        return
    assert isinstance(request, RawRequest), request
    answer = asyncio.run(ROUTER.dispatch(request))
    if isinstance(answer, Stream):
        assert request.target.startswith("/v1/events")
        answer.source.close()
        return
    assert answer.status in STATUSES, (answer.status, answer.body)
    if answer.content_type == "application/json":
        value = json.loads(answer.body)
        assert isinstance(value, dict)
        if answer.status >= 400:
            assert set(value) == {"error"}, value
    else:
        assert request.target.split("?")[0] == "/" and answer.status == 200
    out = conn.answer(answer.status, answer.body, answer.content_type, list(answer.headers))
    assert out.startswith(b"HTTP/1.1 %d " % answer.status)


def test_every_parameter_with_every_odd_value() -> None:
    """Exhaustive beside the fuzz: each route x each parameter x each odd value (Unicode
    digits, infinities, half dates...) is answered 200 or 400 JSON, never 500."""
    for route in ("/v1/boots", "/v1/events", "/v1/machines/52:54:00:12:34:56"):
        for key in ("mac", "state", "since", "limit", "x"):
            for value in ODD + MACS:
                target = f"{route}?{key}={quote(value, safe='')}"
                raw = RawRequest("GET", target, ((b"host", b"a"),), b"")
                answer = asyncio.run(ROUTER.dispatch(raw))
                if isinstance(answer, Stream):
                    answer.source.close()
                    continue
                assert answer.status in (200, 400), (target, answer.status, answer.body)
                assert json.loads(answer.body), target
