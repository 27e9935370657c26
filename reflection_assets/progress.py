"""Progress lines with rate and ETA for long per-row work, throttled so logs stay readable."""

from __future__ import annotations

import time
from collections.abc import Callable


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """Call `update(done, total)`; logs `label: done/total (x/s, ETA ...)` at most every `every_s`."""

    def __init__(
        self,
        log: Callable[[str], None],
        label: str,
        unit: str = "rows",
        every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.log, self.label, self.unit, self.every_s, self.clock = log, label, unit, every_s, clock
        self.start = clock()
        self.last = -float("inf")

    def message(self, done: int, total: int) -> str:
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else float("inf")
        eta_text = format_duration(eta) if eta != float("inf") else "?"
        return f"{self.label}: {done}/{total} {self.unit} ({rate:.2f} {self.unit}/s, ETA {eta_text})"

    def update(self, done: int, total: int) -> None:
        now = self.clock()
        if done >= total or now - self.last >= self.every_s:
            self.last = now
            self.log(self.message(done, total))

    __call__ = update
