"""The one settings object of an HTTP listener: pxed's file server (`server.HttpServer`,
python -m ptftpd.http) and pxed's operator API (`ptftpd.pxe.api`, its own defaults in
`API_DEFAULTS` there) are both built from an `HttpConfig`; the sans-IO connections
(`protocol.ServerConnection`, the API's `ApiConnection`) read its request bounds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_MAX_CONNECTIONS", "HttpConfig"]

DEFAULT_MAX_CONNECTIONS = 4096


@dataclass(frozen=True)
class HttpConfig:
    root: Path | None
    """The directory the file server serves (None: a listener that serves no files,
    the operator API)."""
    bind: tuple[tuple[str, int], ...]
    """(host, port) pairs, IPv4 or IPv6 (link-local with `%scope`); port 0 picks one.
    The operator API listens on exactly one."""
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """Open connections served at once; more wait in the listen backlog (the file
    server) or are answered 503 (the API)."""
    idle_timeout: float = 60.0
    """Seconds a keep-alive connection may wait for its next request, and a download
    may make no progress (a client that stops reading), before it is closed."""
    header_timeout: float = 10.0
    """Seconds from the first byte of a request (from accept, for the first one) until
    its head must be complete: slow-header clients (slowloris) are closed after this.
    The API's requests, whose small bodies are read whole, must arrive whole by then."""
    write_timeout: float = 10.0
    """The API: seconds the peer has to take each answer (and each event of a stream).
    The file server's downloads are bounded by `idle_timeout` instead."""
    keepalive: float = 15.0
    """The API: seconds between comments that keep a quiet event stream open."""
    sendfile: bool = True
    """False forces the read-and-write path (the automatic fallback when sendfile fails)."""
    max_head: int = 16 * 1024
    """Request line plus headers; more is 431 (or 414 when the request line alone is)."""
    max_target: int = 8 * 1024
    """Request-target length; more is 414."""
    max_body: int = 64 * 1024
    """A GET/HEAD body is read and thrown away up to this size (the API reads it);
    more is 413."""
    max_headers: int | None = None
    """Header lines; more is 431. None: `max_head` alone bounds them (the file server;
    the operator API counts them)."""
    rate_limit: int | None = None
    """Bytes per second for each client address (all its connections together)."""
    total_rate_limit: int | None = None
    """Bytes per second for every client together."""
