"""The operator API's route table: (method, path pattern) -> handler, with bearer-token
auth for write routes. Pure code: a `RawRequest` in, a `Reply` (or a `Stream`) out.

A pattern is a path whose `{name}` segments match one segment each, percent-decoded
(`/v1/machines/{mac}`); the handler reads them from `request.params`. A handler raises
`ApiError` for a refusal (a JSON ``{"error": ...}`` answer with its status).

Write routes (`write=True`) need ``Authorization: Bearer TOKEN`` with the configured
``api-token``: without one configured they are off (403); a missing or wrong token is
401 (`WWW-Authenticate: Bearer`).
"""

from __future__ import annotations

import hmac
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ptftpd.pxe.api.connection import RawRequest

__all__ = ["ApiError", "ApiRequest", "Handler", "Reply", "Route", "Router", "Stream", "json_reply"]

log = logging.getLogger("ptftpd.pxe.api")

JSON = "application/json"


class ApiError(Exception):
    """A refusal: answered as JSON ``{"error": message}`` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str
    query: Mapping[str, str]
    params: Mapping[str, str]
    raw: RawRequest

    @property
    def body(self) -> bytes:
        return self.raw.body

    def json(self) -> Any:
        """The body as JSON (400 when it is not)."""
        try:
            return json.loads(self.raw.body or b"null")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the body is not JSON") from None


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class Stream:
    """An answer that stays open: Server-Sent Events from `source` (see
    `ptftpd.pxe.api.events.EventHub.subscribe`)."""

    source: Any
    headers: tuple[tuple[str, str], ...] = ()


def json_reply(value: object, status: int = 200) -> Reply:
    body = json.dumps(value, separators=(",", ":"), allow_nan=False).encode() + b"\n"
    return Reply(status, body)


def error_reply(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    reply = json_reply({"error": message}, status)
    return Reply(reply.status, reply.body, reply.content_type, headers)


Answer = Reply | Stream | Awaitable[Reply | Stream]
Handler = Callable[[ApiRequest], Answer]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    handler: Handler
    write: bool = False
    parts: tuple[str, ...] = field(default=(), compare=False)

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.parts):
            return None
        params: dict[str, str] = {}
        for part, segment in zip(self.parts, segments, strict=True):
            if part.startswith("{") and part.endswith("}"):
                if not segment:
                    return None
                params[part[1:-1]] = unquote(segment, errors="strict")
            elif part != segment:
                return None
        return params


@dataclass(frozen=True)
class _Target:
    path: str
    query: str


class Router:
    """The route table. `token()` gives the configured api-token (None: write routes
    are off); it is read per request, so a reload changes it."""

    def __init__(self, token: Callable[[], str | None] = lambda: None) -> None:
        self.token = token
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler, *, write: bool = False) -> None:
        """Register `handler` for `method` on `pattern` (`/v1/machines/{mac}/local`);
        `write=True` puts it behind the bearer token."""
        if not pattern.startswith("/"):
            raise ValueError(f"pattern {pattern!r} must start with /")
        parts = tuple(pattern.split("/")[1:])
        self.routes.append(Route(method.upper(), pattern, handler, write, parts))

    async def dispatch(self, raw: RawRequest) -> Reply | Stream:
        """The answer to `raw`: the route's, or a JSON error (never an exception)."""
        try:
            answer = self._dispatch(raw)
            if inspect.isawaitable(answer):
                answer = await answer
            return answer
        except ApiError as exc:
            headers: tuple[tuple[str, str], ...] = ()
            if exc.status == 401:
                headers = (("WWW-Authenticate", 'Bearer realm="pxed"'),)
            return error_reply(exc.status, exc.message, headers)
        except Exception:
            log.exception("internal error answering %s %s", raw.method, raw.target[:200])
            return error_reply(500, "internal error")

    def _dispatch(self, raw: RawRequest) -> Answer:
        # Origin form (/path?query); the absolute form (http://host/path) names its path.
        absolute = raw.target.lower().startswith(("http://", "https://"))
        target = urlsplit(raw.target) if absolute else _Target(*raw.target.partition("?")[::2])
        try:
            query = dict(parse_qsl(target.query, keep_blank_values=True, errors="strict"))
            segments = target.path.split("/")[1:]
            if not target.path.startswith("/"):
                raise ValueError
            found = [(route, route.match(segments)) for route in self.routes]
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "malformed request target") from None
        matching = [(route, params) for route, params in found if params is not None]
        if not matching:
            raise ApiError(404, f"no such resource: {target.path[:200]}")
        for route, params in matching:
            if route.method == raw.method:
                if route.write:
                    self._authorize(raw)
                request = ApiRequest(raw.method, target.path, query, params, raw)
                return route.handler(request)
        allowed = ", ".join(sorted({route.method for route, _ in matching}))
        reply = error_reply(405, f"method {raw.method[:20]} not allowed", (("Allow", allowed),))
        return reply

    def _authorize(self, raw: RawRequest) -> None:
        token = self.token()
        if not token:
            raise ApiError(403, "write endpoints are off: no api-token is configured")
        given = raw.header("authorization") or ""
        scheme, _, value = given.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode("utf-8", "replace"), token.encode()
        )
        if not ok:
            raise ApiError(401, "a bearer token is required")
