"""`python -m ptftpd.http ROOT --port P --bind ADDR`: the HTTP server on its own.

For tests and for serving a boot tree by hand; pxed runs the same server with
`--http-port` in its own event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ptftpd.http.config import DEFAULT_MAX_CONNECTIONS, HttpConfig
from ptftpd.http.server import HttpServer
from ptftpd.paths import root_problem
from ptftpd.service.runtime import run_service
from ptftpd.values import positive_int

PROG = "python -m ptftpd.http"


def tcp_port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 86400 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve ROOT read-only over HTTP/1.1 (GET, HEAD, Range, keep-alive).",
        epilog=f"example: {PROG} -v --port 8080 --bind 127.0.0.1 --bind ::1 /srv/tftp",
    )
    parser.add_argument("root", metavar="ROOT", type=Path, help="directory to serve")
    parser.add_argument("-p", "--port", type=tcp_port, default=8080, help="TCP port (8080)")
    parser.add_argument(
        "-b",
        "--bind",
        metavar="ADDR",
        action="append",
        help="address to listen on; repeat for several (0.0.0.0 and ::)",
    )
    parser.add_argument(
        "--max-connections",
        type=positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="connections served at once; more wait in the listen backlog (the open-file "
        f"limit is raised to fit) ({DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--rate-limit",
        type=positive_int,
        metavar="BYTES_PER_S",
        help="at most this many bytes per second to each client address (no limit)",
    )
    parser.add_argument(
        "--total-rate-limit",
        type=positive_int,
        metavar="BYTES_PER_S",
        help="at most this many bytes per second to all clients together (no limit)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=seconds,
        default=60.0,
        metavar="SECONDS",
        help="close a keep-alive connection idle this long, or a stalled download (60)",
    )
    parser.add_argument(
        "--header-timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="close a connection whose request head is not complete in time (10)",
    )
    parser.add_argument(
        "--no-sendfile", action="store_true", help="copy through user space instead of sendfile"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log one line per request")
    parser.add_argument("-D", "--debug", action="store_true", help="log connection decisions")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = root_problem(args.root)
    if problem:
        parser.exit(1, f"{PROG}: error: {problem}\n")
    hosts = args.bind or ["0.0.0.0", "::"]
    config = HttpConfig(
        root=args.root,
        bind=tuple((host, args.port) for host in hosts),
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
        header_timeout=args.header_timeout,
        sendfile=not args.no_sendfile,
        rate_limit=args.rate_limit,
        total_rate_limit=args.total_rate_limit,
    )

    async def body(stop: asyncio.Event) -> None:
        server = HttpServer(config)
        try:
            await server.start()
            await stop.wait()
        finally:
            server.close()
            await server.wait_closed()

    return run_service(PROG, args, body)


if __name__ == "__main__":
    sys.exit(main())
