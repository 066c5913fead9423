"""The read endpoints of the boot timeline (issue 23), and the live page.

- ``GET /``: the live page (one self-contained HTML file, `page.html`).
- ``GET /v1/boots?mac=&state=&since=&limit=``: recent attempts, newest first, as
  ``{"boots": [attempt, ...]}``. `mac`: one machine (``52:54:00:12:34:56``, dashes or
  bare hex too); `state`: ``in_progress``, ``completed``, ``failed`` or ``stalled``
  (several with commas); `since`: attempts with a step at or after this time (Unix
  seconds, or ISO 8601 with a time zone); `limit`: at most this many (1-1000, 100).
  Any other parameter, or a bad value, is 400 with ``{"error": ...}``.
- ``GET /v1/machines/<mac>``: ``{"mac": ..., "attempts": [...]}``, newest first; a MAC
  with no attempt kept is 404.
- ``GET /v1/events?mac=&state=``: Server-Sent Events, one ``boot`` event per attempt
  each time it changes (its whole record), filtered as `/v1/boots`.

An attempt is `Attempt.view` with wall-clock times: ``mac``, ``attempt`` (this
machine's, from 1), ``started``, ``updated``, ``state``, ``reason``, ``stalled_at``,
``diagnosis`` (list of lines), ``steps`` (each ``time``, ``kind`` and its details)
and ``steps_dropped``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from importlib import resources
from typing import Any

from ptftpd.pxe.api.events import EventHub
from ptftpd.pxe.api.routes import ApiError, ApiRequest, Reply, Router, Stream
from ptftpd.pxe.timeline import COMPLETED, FAILED, IN_PROGRESS, STALLED, Attempt
from ptftpd.pxe.timeline_driver import TimelineDriver

__all__ = ["add_boot_routes", "machine_key"]

STATES = (IN_PROGRESS, COMPLETED, FAILED, STALLED)
MAX_LIMIT = 1000
CHUNK = 50  # views built between two looks at the event loop
DEFAULT_LIMIT = 100
_MAC = re.compile(r"[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}")
_OTHER_KEY = re.compile(r"(ip|duid) [0-9a-f:.]{1,200}")
PAGE_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:",
    ),
    ("Cache-Control", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
)


def machine_key(text: str) -> str:
    """A machine as the timeline names it: a MAC in lower-case colon form (from
    colons, dashes or bare hex), or ``ip ADDR`` / ``duid ...`` as shown; else 400."""
    low = text.strip().lower()
    if _MAC.fullmatch(low):
        bare = low.replace(":", "").replace("-", "")
        return ":".join(bare[i : i + 2] for i in range(0, 12, 2))
    if _OTHER_KEY.fullmatch(low):
        return low
    raise ApiError(400, f"not a MAC address: {text[:60]!r}")


def _since(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ApiError(
                400, f"since: not Unix seconds or an ISO 8601 time: {text[:60]!r}"
            ) from None
        if moment.tzinfo is None:
            raise ApiError(
                400, "since: an ISO 8601 time needs its time zone (Z or +hh:mm)"
            ) from None
        return moment.timestamp()
    if not math.isfinite(value):
        raise ApiError(400, f"since: not a time: {text[:60]!r}")
    return value


Filter = Callable[[dict[str, Any]], bool]


def _filters(query: Mapping[str, str], allowed: tuple[str, ...]) -> dict[str, Any]:
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise ApiError(400, f"unknown parameter {unknown[0][:40]!r} (known: {', '.join(allowed)})")
    out: dict[str, Any] = {}
    if "mac" in query:
        out["mac"] = machine_key(query["mac"])
    if "state" in query:
        states = query["state"].split(",")
        for state in states:
            if state not in STATES:
                raise ApiError(400, f"state: {state[:40]!r} is not one of {', '.join(STATES)}")
        out["state"] = set(states)
    if "since" in query:
        out["since"] = _since(query["since"])
    if "limit" in query:
        text = query["limit"]
        if not re.fullmatch(r"[0-9]{1,4}", text) or not 1 <= int(text) <= MAX_LIMIT:
            raise ApiError(400, f"limit: a whole number from 1 to {MAX_LIMIT}, not {text[:20]!r}")
        out["limit"] = int(text)
    return out


def _accepts(filters: Mapping[str, Any]) -> Filter:
    def accept(view: dict[str, Any]) -> bool:
        if "mac" in filters and view["mac"] != filters["mac"]:
            return False
        if "state" in filters and view["state"] not in filters["state"]:
            return False
        return "since" not in filters or view["updated"] >= filters["since"]

    return accept


async def _listing(
    name: str, views: list[dict[str, Any]], head: dict[str, str] | None = None
) -> Reply:
    """``{**head, name: views}`` as a JSON reply, encoded `CHUNK` views at a time with
    the loop free between (1,000 views are about 2 MB of JSON)."""
    parts: list[str] = []
    for n, view in enumerate(views, 1):
        parts.append(json.dumps(view, separators=(",", ":"), allow_nan=False))
        if n % CHUNK == 0:
            await asyncio.sleep(0)
    start = json.dumps(head or {}, separators=(",", ":"))[:-1]
    start += ("," if head else "") + json.dumps(name) + ":["
    return Reply(200, (start + ",".join(parts) + "]}\n").encode())


def page() -> bytes:
    return resources.files("ptftpd.pxe.api").joinpath("page.html").read_bytes()


def add_boot_routes(
    router: Router,
    driver: TimelineDriver,
    hub: EventHub,
    shared: Callable[[], list[dict[str, Any]]] | None = None,
    server: str | None = None,
) -> None:
    """Register the page and the read endpoints of `driver`'s timeline on `router`.
    `shared`: the attempts other servers keep in the same lease database
    (`pxe/boot_records.py`), shown beside this server's own (each view then says its
    `server`, this one's being `server`)."""
    html = page()

    def merged(own: list[dict[str, Any]], accept: Filter, limit: int) -> list[dict[str, Any]]:
        if shared is None:
            return own
        for view in own:
            view["server"] = server
        found = own + [v for v in shared() if accept(v)]
        found.sort(key=lambda v: v["started"], reverse=True)
        return found[:limit]

    def live_page(request: ApiRequest) -> Reply:
        return Reply(200, html, "text/html; charset=utf-8", PAGE_HEADERS)

    async def views(attempts: list[Attempt], keep: Callable[[Attempt, float], bool],
                    limit: int) -> list[dict[str, Any]]:  # fmt: skip
        """The views of the `attempts` that `keep` takes, at most `limit`: tested on the
        attempt first (no view built for one left out), built `CHUNK` at a time with
        the loop free between (a diagnosis per view: 1,000 views take ~0.1 s)."""
        offset = driver.offset()
        found: list[dict[str, Any]] = []
        for attempt in attempts:
            if keep(attempt, offset):
                found.append(attempt.view(offset))
                if len(found) >= limit:
                    break
                if len(found) % CHUNK == 0:
                    await asyncio.sleep(0)
        return found

    async def boots(request: ApiRequest) -> Reply:
        filters = _filters(request.query, ("mac", "state", "since", "limit"))
        limit = filters.get("limit", DEFAULT_LIMIT)

        def keep(attempt: Attempt, offset: float) -> bool:
            if "state" in filters and attempt.state not in filters["state"]:
                return False
            return "since" not in filters or attempt.last_progress + offset >= filters["since"]

        attempts = driver.timeline.attempts(filters.get("mac"))
        found = await views(attempts, keep, limit)
        return await _listing("boots", merged(found, _accepts(filters), limit))

    async def machine(request: ApiRequest) -> Reply:
        mac = machine_key(request.params["mac"])
        if request.query:
            raise ApiError(400, "this resource takes no parameters")
        found = await views(driver.timeline.attempts(mac), lambda a, o: True, MAX_LIMIT)
        attempts = merged(found, lambda v: v["mac"] == mac, MAX_LIMIT)
        if not attempts:
            raise ApiError(404, f"no boot attempt of {mac} is kept")
        return await _listing("attempts", attempts, {"mac": mac})

    def events(request: ApiRequest) -> Stream:
        filters = _filters(request.query, ("mac", "state"))
        subscriber = hub.subscribe(_accepts(filters))
        if subscriber is None:
            raise ApiError(503, "too many event streams open")
        return Stream(subscriber)

    router.add("GET", "/", live_page)
    router.add("GET", "/v1/boots", boots)
    router.add("GET", "/v1/machines/{mac}", machine)
    router.add("GET", "/v1/events", events)
