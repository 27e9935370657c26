"""A simulated CUDA out-of-memory on CPU, for the retry paths no GPU has run in the tests.

`simulated_oom(module, max_rows)` makes `module`'s forward raise `torch.OutOfMemoryError` for
batches of more than `max_rows` rows, as a full GPU would, after allocating "activations" the way
a real forward does before it runs out. Every call it lets through after a failure checks what a
retry on a GPU needs: no exception is being handled (the retry does not run inside an `except`
block, whose traceback keeps the failed forward alive) and the failed calls' tensors are gone.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class SimulatedOOM:
    max_rows: int
    failures: int = 0  # forwards that ran out of memory
    retries: int = 0  # forwards let through after a failure (each one checked)
    failed_rows: list[int] = field(default_factory=list)
    _activations: list[weakref.ref] = field(default_factory=list)

    def hook(self, module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids")
        if ids is None:
            ids = args[0] if args else kwargs["inputs_embeds"]
        rows = int(ids.shape[0])
        if rows > self.max_rows:
            activations = torch.ones(rows, 64)  # what the failed forward holds when it runs out
            self._activations.append(weakref.ref(activations))
            self.failures += 1
            self.failed_rows.append(rows)
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate a batch of {rows} rows")
        if self.failures:
            assert sys.exc_info() == (None, None, None), "retried inside the except block of the failure"
            assert all(ref() is None for ref in self._activations), "the failed forward's tensors are still held"
            self.retries += 1


@contextmanager
def simulated_oom(module: Any, max_rows: int) -> Iterator[SimulatedOOM]:
    oom = SimulatedOOM(max_rows)
    handle = module.register_forward_pre_hook(oom.hook, with_kwargs=True)
    try:
        yield oom
    finally:
        handle.remove()


def decoder(model: Any) -> Any:
    """The innermost decoder stack (LlamaModel, GPT2Model...) of a model, PEFT-wrapped or not."""
    return next(m for m in model.modules() if "layers" in m._modules or "h" in m._modules)
