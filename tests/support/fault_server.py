"""A real OpenAI-compatible HTTP server on 127.0.0.1 that injects faults on request.

A row asks for a fault in its own text: `FAULT=429x2` answers the first two requests for that
row with 429 (Retry-After) and then succeeds; `FAULT=500xalways` never succeeds. Rows are told
apart by `ROW=<id>` in the prompt. The server counts every request, so tests can check that the
client stayed within its retry bound. Also used by the throughput benchmark (fixed latency).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from support.loopback import LoopbackHandler, LoopbackServer, start, stop

FAULTS = ("ok", "429", "500", "503", "400", "slow", "truncated", "empty", "unparsable", "echoauth")
ALWAYS = 10**9
_DIRECTIVE = re.compile(r"FAULT=(\w+?)(?:x(\d+|always))?\b")
_ROW = re.compile(r"ROW=([\w-]+)")


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when the request arrived
    row: str
    fault: str  # what was answered: a fault name or "ok"
    path: str
    body: dict


@dataclass
class FaultServer:
    """Start with `with FaultServer() as server:`; `server.url` is the /v1 base URL."""

    latency_s: float = 0.0  # added to every answer (benchmarks)
    slow_s: float = 2.0  # how long a "slow" answer takes (set above the client's timeout)
    retry_after: str = "1"  # Retry-After header sent with 429
    logprobs: bool = False  # offer top_logprobs when asked (choose)
    # continue_final_message: "continue" (as vLLM), "ignore" (answers a fresh turn) or "reject" (422,
    # as `transformers serve`)
    prefix: str = "continue"
    seen: list[Seen] = field(default_factory=list)
    auth_headers: list[str] = field(default_factory=list)
    _counts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: LoopbackServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> FaultServer:
        self._server = start(_Handler, self)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        stop(self._server)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # -- bookkeeping -------------------------------------------------------------------------

    def requests_for(self, row: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.row == row]

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.seen)

    def decide(self, body: dict) -> tuple[str, str]:
        """(row, fault to answer with) for one request; counts it."""
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user")
        row_match = _ROW.search(prompt)
        row = row_match.group(1) if row_match else str(abs(hash(prompt)))
        directive = _DIRECTIVE.search(prompt)
        with self._lock:
            n = self._counts.get(row, 0)
            self._counts[row] = n + 1
        if not directive:
            return row, "ok"
        kind, times = directive.group(1), directive.group(2)
        if kind == "unparsable":
            return row, kind
        limit = ALWAYS if times == "always" else int(times or 1)
        return row, kind if n < limit else "ok"

    def record(self, seen: Seen, auth: str | None) -> None:
        with self._lock:
            self.seen.append(seen)
            if auth:
                self.auth_headers.append(auth)


def reply_text(body: dict, row: str) -> str:
    """A well-formed reflection for the stage the prompt asks for (or one guided section)."""
    messages = body.get("messages", [])
    prompt = "\n".join(str(m.get("content", "")) for m in messages)
    if messages and messages[-1].get("role") == "assistant":  # guided: continue a section
        opened = messages[-1].get("content", "").rstrip().rsplit("[", 1)[-1].rstrip("]")  # e.g. "New Answer"
        return f"{opened} written for {row}."
    if body.get("stop"):  # guided: the bounded critique before the first marker
        return f"The pair {row} could be more demanding."
    if "[Better Answer]" in prompt:
        return f"The answer is thin.\n[Better Answer]\nA fuller answer for {row}.\n[End]"
    return (
        f"The instruction is vague.\n[New Instruction]\nA harder, self-contained task for {row}.\n[End]\n"
        f"[New Answer]\nA careful answer for {row}.\n[End]"
    )


GENERATION_PROMPT_TOKENS = 5  # what closing the last turn and opening a new assistant turn costs


def completion_body(body: dict, text: str, logprobs: bool, continues: bool = True) -> dict[str, Any]:
    prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
    if not (continues and body.get("continue_final_message")):
        prompt_chars += 4 * GENERATION_PROMPT_TOKENS
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if logprobs and body.get("logprobs"):
        choice["logprobs"] = {"content": [{"token": "A", "logprob": -0.2, "top_logprobs": [
            {"token": "A", "logprob": -0.2}, {"token": " B", "logprob": -1.8}, {"token": "C", "logprob": -5.0}]}]}
    return {
        "id": "chatcmpl-fault", "object": "chat.completion", "model": body.get("model", ""),
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_chars // 4, "completion_tokens": max(1, len(text) // 4),
                  "total_tokens": prompt_chars // 4 + max(1, len(text) // 4)},
    }


class _Handler(LoopbackHandler):
    owner: FaultServer

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        arrived = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        row, fault = self.owner.decide(body)
        self.owner.record(Seen(arrived, row, fault, self.path, body), self.headers.get("Authorization"))
        if self.owner.latency_s:
            time.sleep(self.owner.latency_s)
        try:
            self.answer(body, row, fault)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to answer

    def answer(self, body: dict, row: str, fault: str) -> None:
        if fault == "429":
            return self.send(429, {"error": "rate limited"}, {"Retry-After": self.owner.retry_after})
        if fault in ("500", "503", "400"):
            return self.send(int(fault), {"error": f"injected {fault}"})
        if self.owner.prefix == "reject" and "continue_final_message" in body:
            return self.send(422, {"detail": "Unexpected fields in the request: {'continue_final_message'}"})
        if fault == "echoauth":  # a careless server that repeats the credentials in its error
            return self.send(401, {"error": f"bad credentials: {self.headers.get('Authorization')}"})
        if fault == "slow":
            time.sleep(self.owner.slow_s)
        if fault == "empty":
            return self.send(200, {"id": "x", "choices": [], "usage": {}})
        unparsable = "I think this pair is fine as it is; no changes needed."
        text = unparsable if fault == "unparsable" else reply_text(body, row)
        payload = json.dumps(completion_body(body, text, self.owner.logprobs, self.owner.prefix == "continue")).encode()
        if fault == "truncated":
            payload = payload[: len(payload) // 2]
        self.send_bytes(200, payload)

    def send(self, status: int, obj: dict, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), headers)
