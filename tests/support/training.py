"""Training fixtures: a tiny Llama saved as a model folder (the real local-directory loading path) and rows."""

from __future__ import annotations

from pathlib import Path

from reflection_assets.schema import Pair, Turn


def save_tiny_model(folder: Path) -> Path:
    from tests.support.tiny_lm import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer).save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


def sample_pairs(n: int = 12) -> list[Pair]:
    """Short pairs in the tiny tokenizer's vocabulary; some with a system prompt or earlier turns."""
    topics = ["light", "plants", "water", "energy", "sugar", "leaves", "roots", "air", "soil", "sun", "rain", "seeds"]
    pairs = []
    for i in range(n):
        topic = topics[i % len(topics)]
        history = (Turn("user", "Hello"), Turn("assistant", "Hi")) if i % 4 == 0 else ()
        pairs.append(
            Pair(
                instruction=f"Explain {topic} {i}.",
                output=f"Plants use {topic}. [End] {i}",
                system="You explain." if i % 3 == 0 else "",
                history=history,
                row_id=f"r{i:02d}",
            )
        )
    return pairs
