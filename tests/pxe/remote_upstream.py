"""A test upstream for pxed's remote files (``python remote_upstream.py PORT DIR
[CERT KEY]``): serves DIR's files on 127.0.0.1:PORT (over TLS with CERT and KEY) in the
ways the tests need, one line on stdout per request (its path):

- ``/files/NAME``: the file, with Content-Length;
- ``/nolen/NAME``: the file, no Content-Length (the body ends when the connection does);
- ``/short/NAME``: Content-Length of the whole file, half of it, then the connection closes;
- ``/slow/NAME``: the head after 3 s, then the file 16 KiB every 0.1 s;
- ``/hang/NAME``: no answer for 20 s;
- ``/redirect/N/NAME``: a 302 to ``/redirect/N-1/NAME``, at 0 to ``/files/NAME``;
- ``/elsewhere``: a 302 to ``file:///etc/passwd``.
"""

from __future__ import annotations

import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def main() -> None:
    port, top = int(sys.argv[1]), Path(sys.argv[2])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            print(self.path, flush=True)
            parts = self.path.split("?")[0].lstrip("/").split("/")  # the query: ignored
            try:
                self.answer(parts)
            except OSError:
                pass

        def answer(self, parts: list[str]) -> None:
            if parts[0] == "elsewhere":
                self.redirect("file:///etc/passwd")
                return
            if parts[0] == "hang":
                time.sleep(20)
                return
            if parts[0] == "redirect":
                hops = int(parts[1])
                self.redirect(f"/redirect/{hops - 1}/{parts[2]}" if hops else f"/files/{parts[2]}")
                return
            path = top / parts[-1]
            if len(parts) != 2 or not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            kind = parts[0]
            if kind == "slow":
                time.sleep(3)
            self.send_response(200)
            if kind != "nolen":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if kind == "short":
                data = data[: len(data) // 2]
            if kind == "slow":
                for i in range(0, len(data), 16384):
                    self.wfile.write(data[i : i + 16384])
                    self.wfile.flush()
                    time.sleep(0.1)
                return
            self.wfile.write(data)

        def redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", port), Handler)
    if len(sys.argv) > 4:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(sys.argv[3], sys.argv[4])
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
