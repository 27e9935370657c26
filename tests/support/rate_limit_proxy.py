"""A loopback HTTP proxy that answers some requests with 429 and forwards the rest to a real server.

Put it in front of a real OpenAI-compatible server to check retries end to end: every
`reject_every`-th request (the first included) gets 429 with a Retry-After; the others go upstream
unchanged and their answers come back unchanged.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import httpx

from support.loopback import LoopbackHandler, LoopbackServer, start, stop


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
    _server: LoopbackServer | None = None
    _client: httpx.Client | None = None

    def __enter__(self) -> RateLimitProxy:
        self._client = httpx.Client(timeout=httpx.Timeout(300.0, connect=10.0))
        self._server = start(_Handler, self)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._client is not None
        stop(self._server)
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


class _Handler(LoopbackHandler):
    owner: RateLimitProxy

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.owner.admit():
            rejection = b'{"error": "rate limited by the test proxy"}'
            return self.send_bytes(429, rejection, {"Retry-After": self.owner.retry_after})
        assert self.owner._client is not None
        path = self.path.removeprefix("/v1")
        upstream = self.owner._client.post(
            self.owner.upstream.rstrip("/") + path, content=body, headers={"Content-Type": "application/json"}
        )
        self.send_bytes(upstream.status_code, upstream.content)
