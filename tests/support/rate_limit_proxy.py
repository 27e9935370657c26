"""A loopback HTTP proxy that answers some requests with 429 and forwards the rest to a real server.

Put it in front of a real OpenAI-compatible server to check retries end to end: every
`reject_every`-th request (the first included) gets 429 with a Retry-After; the others go upstream
unchanged and their answers come back unchanged.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


@dataclass
class RateLimitProxy:
    """`with RateLimitProxy(upstream="http://127.0.0.1:8000/v1") as proxy:`; `proxy.url` is its /v1 URL."""

    upstream: str
    reject_every: int = 2
    retry_after: str = "0.2"
    rejected: int = 0
    forwarded: int = 0
    _seen: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _client: httpx.Client | None = None

    def __enter__(self) -> RateLimitProxy:
        self._client = httpx.Client(timeout=httpx.Timeout(300.0, connect=10.0))
        handler = type("Handler", (_Handler,), {"owner": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._client is not None
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def admit(self) -> bool:
        """Whether this request goes upstream (counts it either way)."""
        with self._lock:
            n, self._seen = self._seen, self._seen + 1
            reject = n % self.reject_every == 0
            if reject:
                self.rejected += 1
            else:
                self.forwarded += 1
            return not reject


class _Handler(BaseHTTPRequestHandler):
    owner: RateLimitProxy
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        return

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.owner.admit():
            rejection = b'{"error": "rate limited by the test proxy"}'
            return self.send(429, rejection, {"Retry-After": self.owner.retry_after})
        assert self.owner._client is not None
        path = self.path.removeprefix("/v1")
        upstream = self.owner._client.post(
            self.owner.upstream.rstrip("/") + path, content=body, headers={"Content-Type": "application/json"}
        )
        self.send(upstream.status_code, upstream.content)

    def send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
