"""Caps on teacher calls and tokens for one run.

A call is admitted only while the calls started and the tokens spent, plus the worst case of the
calls still in flight, stay within the caps; so a cap is a promise, not a point past which the run
notices it has overspent. Token counts before a call are estimates (prompt + max_new_tokens).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from reflection_assets.teacher.types import ChatRequest, ChatResult


@dataclass
class Budget:
    max_calls: int | None = None
    max_tokens: int | None = None
    estimate_tokens: Callable[[ChatRequest], int] = lambda r: 0
    calls_started: int = 0
    tokens_spent: int = 0
    tokens_reserved: int = 0
    stopped_by: str = ""  # "max_calls" | "max_tokens" once a call was refused
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _reserved: dict[int, int] = field(default_factory=dict, repr=False)

    def admit(self, request: ChatRequest) -> bool:
        """Reserve room for one call, or refuse it (and every later one) once a cap would be passed."""
        with self._lock:
            if self.stopped_by:
                return False
            if self.max_calls is not None and self.calls_started >= self.max_calls:
                self.stopped_by = "max_calls"
                return False
            worst = self.estimate_tokens(request)
            if self.max_tokens is not None and self.tokens_spent + self.tokens_reserved + worst > self.max_tokens:
                self.stopped_by = "max_tokens"
                return False
            self.calls_started += 1
            self.tokens_reserved += worst
            self._reserved[id(request)] = self._reserved.get(id(request), 0) + worst
            return True

    def settle(self, request: ChatRequest, result: ChatResult) -> None:
        """Replace a call's reservation with what it actually spent."""
        with self._lock:
            self.tokens_reserved -= self._reserved.pop(id(request), 0)
            self.tokens_spent += result.total_tokens
