"""A test decision API in pixiecore's format, run in a namespace by the tests:
``python pixie_api.py PORT RULES.json``. RULES maps a MAC to [delay seconds, status,
body text] and is read again for every request (the test changes it while running);
an unknown MAC gets 404. Each request is one line on stdout: the path and query."""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def main() -> None:
    port, rules = int(sys.argv[1]), sys.argv[2]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            print(self.path, flush=True)
            mac = self.path.split("?")[0].rsplit("/", 1)[-1]
            with open(rules) as f:
                delay, status, body = json.load(f).get(mac, [0, 404, '{"error": "unknown"}'])
            time.sleep(delay)
            data = body.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 256
        daemon_threads = True

    Server(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
