"""An arm's rows as a prompt-completion dataset in the template the scores used.

The student judged each pair under one template (`chat` for a student with a chat template);
training on the same prompts tunes it on what it judged. Under `chat` the rows are conversational
(system prompt, earlier turns, the user turn; the answer as the assistant turn), which makes TRL
put the loss on the completion only without `assistant_only_loss` (that one fails on SmolLM2's
template). Under the text templates the prompt is the rendered text and the completion the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from reflection_assets.schema import Pair
from reflection_assets.scoring.templates import CHAT, chat_messages, check_template, default_template, render_text

ARM_TEXT_COLUMNS = ("row_id", "instruction", "input", "output")


class TrainingDataError(ValueError):
    """Rows that cannot become training examples (reported as one line, no traceback)."""


@dataclass(frozen=True)
class TrainingExample:
    """One row for `SFTTrainer`: conversational (lists of messages) under `chat`, else plain text."""

    row_id: str
    prompt: list[dict] | str
    completion: list[dict] | str

    def as_record(self) -> dict:
        return {"row_id": self.row_id, "prompt": self.prompt, "completion": self.completion}


def training_pairs(arm_rows: pd.DataFrame, raw: pd.DataFrame | None = None) -> list[Pair]:
    """The arm's pairs, in row_id order, with each raw row's system prompt and earlier turns (joined by row_id).

    Every derived row keeps its raw row's id, and the scoring stages kept the raw system prompt and
    history for rewritten pairs too (`selection.pairs.rebuilt_pairs`), so the join applies to every arm row. Rows
    whose id is not among `raw` (a data file without them) train without context.
    """
    missing = [c for c in ARM_TEXT_COLUMNS if c not in arm_rows.columns]
    if missing:
        raise TrainingDataError(f"arm rows lack the columns {missing}")
    context: dict[str, tuple[str, str]] = {}
    if raw is not None and len(raw):
        for row in raw.drop_duplicates("row_id").itertuples():
            context[str(row.row_id)] = (
                str(getattr(row, "system", "") or ""),
                str(getattr(row, "history", "[]") or "[]"),
            )
    pairs = []
    # Sorted by row_id: a table read back from the warehouse has no guaranteed order, and the
    # checkpoint key and the trainer's seeded shuffle both depend on it.
    for row in arm_rows.sort_values("row_id", kind="mergesort").itertuples():
        system, history = context.get(str(row.row_id), ("", "[]"))
        pairs.append(
            Pair(
                instruction=str(row.instruction or ""),
                output=str(row.output or ""),
                input=str(row.input or ""),
                system=system,
                history=Pair.history_from_json(history),
                row_id=str(row.row_id),
            )
        )
    return pairs


def resolve_template(tokenizer: Any, template: str | None) -> str:
    """The scoring default (`chat` with a chat template, else `alpaca`) unless one is named."""
    return check_template(template, tokenizer) if template else default_template(tokenizer)


def training_examples(pairs: Sequence[Pair], tokenizer: Any, template: str | None = None) -> list[TrainingExample]:
    """Prompt-completion examples; pairs with an empty answer have nothing to learn and are left out."""
    name = resolve_template(tokenizer, template)
    examples = []
    for pair in pairs:
        if not pair.output.strip():
            continue
        if name == CHAT:
            prompt: list[dict] | str = chat_messages(pair.instruction, pair.input, pair.system, pair.history)
            completion: list[dict] | str = [{"role": "assistant", "content": pair.output}]
        else:
            prompt = render_text(name, pair.instruction, pair.input, pair.system, pair.history)
            completion = pair.output
        examples.append(TrainingExample(pair.row_id, prompt, completion))
    return examples


def examples_fingerprint(examples: Sequence[TrainingExample]) -> list:
    """What the checkpoint key hashes of the data: every row's id and full content, in order."""
    return [[e.row_id, e.prompt, e.completion] for e in examples]
