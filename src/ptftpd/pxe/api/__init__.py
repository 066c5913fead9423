"""pxed's operator API (``pxed --api ADDR:PORT``): its own listener, never the firmware's
HTTP port. asyncio + h11, bounded (connections, request size, header lines, time per
request and per write).

Endpoints (`ptftpd.pxe.api.boots` documents the forms):

- ``GET /``: the live page (``page.html``, one self-contained file shipped in the package);
- ``GET /v1/boots``: recent boot attempts (filters ``mac``, ``state``, ``since``, ``limit``);
- ``GET /v1/machines/<mac>``: one machine's attempts, newest first (404 when none);
- ``GET /v1/events``: Server-Sent Events of boot records as they change.

Errors are JSON ``{"error": "..."}`` with their status (400 bad filter, 404, 405, 401...).

Adding a route (one way, for everyone): pxed builds the table in
`ptftpd.pxe.service.PxeService.api_routes`; register there, with

    router.add("POST", "/v1/machines/{mac}/local", handler, write=True)

`handler` is a plain function of an `ApiRequest` (``.params["mac"]``, ``.query``,
``.json()``) returning a `Reply` (`json_reply(value, status)`) or raising
``ApiError(status, message)``; it runs in pxed's event loop and must not block.
``write=True`` puts the route behind ``Authorization: Bearer <api-token>`` (the
settings file's ``api-token``): without a token configured write routes answer 403,
without the right token 401.
"""

from __future__ import annotations

from ptftpd.pxe.api.boots import add_boot_routes, machine_key
from ptftpd.pxe.api.connection import API_DEFAULTS
from ptftpd.pxe.api.events import EventHub
from ptftpd.pxe.api.routes import ApiError, ApiRequest, Reply, Router, Stream, json_reply
from ptftpd.pxe.api.server import ApiServer, api_config

__all__ = [
    "API_DEFAULTS",
    "ApiError",
    "ApiRequest",
    "ApiServer",
    "EventHub",
    "Reply",
    "Router",
    "Stream",
    "add_boot_routes",
    "api_config",
    "json_reply",
    "machine_key",
]
