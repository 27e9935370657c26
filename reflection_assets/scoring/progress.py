"""Progress reporting: turns the engine's (done, total) token counts into rate and ETA lines."""

from __future__ import annotations

import time
from typing import Callable


def format_eta(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class RateLogger:
    """A progress callback that logs at most every `every_s` seconds (and always at the end).

    Pass `context.log.info` from an asset or a stderr printer from the command line.
    """

    def __init__(self, log: Callable[[str], None], every_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.every_s, self.clock = log, every_s, clock
        self.started = clock()
        self.last = float("-inf")

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if done < total and now - self.last < self.every_s:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else float("inf")
        percent = 100.0 * done / total if total else 100.0
        eta_text = format_eta(eta) if eta != float("inf") else "?"
        self.log(f"scored {done:,}/{total:,} tokens ({percent:.1f}%), {rate:,.0f} tok/s, ETA {eta_text}")
