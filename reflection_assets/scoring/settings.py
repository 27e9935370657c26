"""The scoring settings, owned here: the `score` command, the student resource and the scorer read them.

Kept free of torch so that `reflection-tuning score --help` builds its options from this dataclass
without loading the scoring stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from reflection_assets.documented import documented
from reflection_assets.scoring.templates import StartToken, TemplateName

DEFAULT_BATCH_TOKENS = {"cpu": 1024, "cuda": 32768}  # CPU: small batches stay in cache (measured)


@dataclass(frozen=True)
class ScoringConfig:
    """How pairs are scored; the same values give the same numbers in the assets and the `score` command."""

    template: TemplateName | None = documented(
        None, "prompt template (unset: chat when the student has a chat template, else alpaca)"
    )
    start_token: StartToken = documented(
        "bos", "context of the unconditioned pass: one BOS token, one EOS token, or the response header"
    )
    max_length: int = documented(
        512, "prompt + scored tokens per pass (the scored part is cut to fit; a prompt that fills it is not scored)"
    )
    batch_tokens: int | None = documented(
        None,
        "padded tokens per forward pass (unset: {cpu} on CPU, {cuda} on CUDA)".format(**DEFAULT_BATCH_TOKENS),
    )
