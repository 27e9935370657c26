"""A key/value cache that grows in place.

transformers' DynamicLayer concatenates at every token, which copies (and re-allocates) the whole
cache each step: at batch 32 with ~700-token rows that is ~1 GB per token on SmolLM2-135M. This layer
keeps a buffer with spare capacity and returns views of its filled part, so a step writes only the
new keys and values.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

GROWTH_TOKENS = 256  # capacity is added in steps of at least this many columns


class GrowingLayer(DynamicLayer):
    """DynamicLayer semantics (shape [batch, heads, length, head_dim]) with amortised appends."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None
        self._length = 0

    def _reserve(self, key_states: torch.Tensor, value_states: torch.Tensor, needed: int) -> None:
        capacity = 0 if self._key_buffer is None else self._key_buffer.shape[-2]
        if needed <= capacity:
            return
        capacity = max(needed, capacity + max(GROWTH_TOKENS, capacity // 2))  # x1.5: bounded spare memory
        batch, heads, _, key_dim = key_states.shape
        keys = key_states.new_zeros((batch, heads, capacity, key_dim))
        values = value_states.new_zeros((batch, heads, capacity, value_states.shape[-1]))
        if self._length:
            keys[:, :, : self._length] = self.keys
            values[:, :, : self._length] = self.values
        self._key_buffer, self._value_buffer = keys, values

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start, end = self._length, self._length + key_states.shape[-2]
        self._reserve(key_states, value_states, end)
        assert self._key_buffer is not None and self._value_buffer is not None
        self._key_buffer[:, :, start:end] = key_states
        self._value_buffer[:, :, start:end] = value_states
        self._length = end
        self.keys, self.values = self._key_buffer[:, :, :end], self._value_buffer[:, :, :end]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.get_seq_length() > 0 and self._key_buffer is not None and self._value_buffer is not None:
            self._key_buffer, self._value_buffer = self._key_buffer[indices], self._value_buffer[indices]
            self.keys = self._key_buffer[:, :, : self._length]
            self.values = self._value_buffer[:, :, : self._length]

    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)
        if self.is_initialized and self.keys is not None:
            self._length = self.keys.shape[-2]

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("GrowingLayer does not support beam expansion")


def _filled(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _rebuilt(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    cache = DynamicCache()
    cache.layer_class_to_replicate = GrowingLayer
    for index, (keys, values) in enumerate(layers):
        cache.update(keys, values, index)
    return cache


def merge_caches(first: DynamicCache, second: DynamicCache, pad_first: int, pad_second: int) -> DynamicCache:
    """One growing cache holding `first`'s rows then `second`'s, each left-padded by its number of columns
    (zeros the attention mask hides), so both end on the same column."""

    def padded(tensor: torch.Tensor, columns: int) -> torch.Tensor:
        return torch.nn.functional.pad(tensor, (0, 0, columns, 0)) if columns else tensor

    return _rebuilt(
        [
            (
                torch.cat([padded(k1, pad_first), padded(k2, pad_second)]),
                torch.cat([padded(v1, pad_first), padded(v2, pad_second)]),
            )
            for (k1, v1), (k2, v2) in zip(_filled(first), _filled(second))
        ]
    )


def keep_columns(cache: DynamicCache, columns: torch.Tensor) -> DynamicCache:
    """A growing cache with only these columns (those some row still attends to), in order."""
    return _rebuilt([(keys[:, :, columns], values[:, :, columns]) for keys, values in _filled(cache)])


def supports_growing_cache(model: Any) -> bool:
    """Only plain full-attention decoders: sliding windows and recurrent states keep their own caches."""
    config = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    return all(kind == "full_attention" for kind in layer_types) and not getattr(config, "sliding_window", None)


def new_cache(model: Any) -> DynamicCache:
    """An empty cache for `model`: growing layers where safe, else transformers' own layout."""
    if supports_growing_cache(model):
        cache = DynamicCache()
        cache.layer_class_to_replicate = GrowingLayer
        return cache
    return DynamicCache(config=model.config)
