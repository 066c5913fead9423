"""Read-only HTTP/1.1 file server (GET, HEAD, Range, keep-alive, sendfile) for pxed.

`HttpServer(HttpConfig(root, bind=((host, port), ...)), on_served=callback)`, then
`await server.start()` and `server.close()`. The protocol core (`protocol`) is sans-IO;
`server` is its asyncio driver.
"""

from ptftpd.http.config import HttpConfig
from ptftpd.http.errors import HttpError
from ptftpd.http.server import HttpServer, Served

__all__ = ["HttpConfig", "HttpError", "HttpServer", "Served"]
