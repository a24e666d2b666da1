"""A local Sentry ingest endpoint: records the envelopes the real sentry-sdk sends over HTTP."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeSentry:
    """Listens on a free port from construction on; `dsn` points the sentry-sdk at it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    raw = gzip.decompress(raw)
                elif encoding == "deflate":
                    raw = zlib.decompress(raw)
                with fake._lock:
                    fake.bodies.append(raw)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self._server.server_address[1]}/1"

    def events(self) -> list[dict[str, Any]]:
        """Event items of the envelopes received (error events, not transactions or sessions)."""
        found = []
        with self._lock:
            bodies = list(self.bodies)
        for body in bodies:
            lines = body.split(b"\n")
            for index, line in enumerate(lines[1:], start=1):
                try:
                    header = json.loads(line)
                except ValueError:
                    continue
                if isinstance(header, dict) and header.get("type") == "event" and index + 1 < len(lines):
                    found.append(json.loads(lines[index + 1]))
        return found

    def raw(self) -> bytes:
        with self._lock:
            return b"\n".join(self.bodies)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
