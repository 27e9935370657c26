"""PEFT's per-row adapter hooks, removed when a forward fails.

PEFT 0.21 serves `adapter_names=[...]` by registering a forward pre-hook on every LoRA layer for the
duration of the forward, in a context manager without `try/finally`: a forward that raises (an
out-of-memory the engine then halves) leaves the hooks in place, and every later forward of another
batch size fails ("Length of `adapter_names` should be the same as the number of inputs") or, at the
same size, routes rows through the failed batch's adapters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

PEFT_ROW_HOOKS = ("_adapter_names_pre_forward_hook", "_alora_offsets_pre_forward_hook")


def drop_adapter_hooks(model: Any) -> int:
    """Remove PEFT's per-row adapter hooks left on `model`'s modules; how many there were."""
    removed = 0
    for module in model.modules():
        for key, hook in list(module._forward_pre_hooks.items()):
            if getattr(getattr(hook, "func", None), "__name__", "") in PEFT_ROW_HOOKS:
                del module._forward_pre_hooks[key]
                module._forward_pre_hooks_with_kwargs.pop(key, None)
                removed += 1
    return removed


@contextmanager
def cleaned_on_failure(model: Any) -> Iterator[None]:
    """Run a forward; if it raises, remove the adapter hooks it left before the error goes on."""
    try:
        yield
    except BaseException:
        drop_adapter_hooks(model)
        raise
