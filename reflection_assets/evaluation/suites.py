"""The evaluation items: held-out pairs, generated suites (seeded, versioned) and a GSM8K-format file.

Every item has a stable id (a content hash), so the base and every arm are scored on the same
items and the report pairs them. The generated suites need no download: the same version and
seed always give the same items, and both are recorded with the scores.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reflection_assets.evaluation.extraction import reference_number
from reflection_assets.hashing import content_hash

HELDOUT_NLL, ARITHMETIC, IFEVAL, GSM8K, JUDGE, LM_EVAL_ARITHMETIC = (
    "heldout_nll",
    "arithmetic",
    "ifeval",
    "gsm8k",
    "judge",
    "lm_eval_arithmetic",
)
# Suites answered by generation; they share one pass over every model.
GENERATED_SUITES = (ARITHMETIC, IFEVAL, GSM8K, JUDGE)
SUITE_VERSION = "2"  # bump when a generator or a checker changes what an item means
ARITHMETIC_HINT = "Give the final answer as a number on the last line, after '####'."


class EvalDataError(ValueError):
    """An eval file that cannot be read (user error: reported with the file and line)."""


@dataclass(frozen=True)
class EvalItem:
    suite: str
    instruction: str
    input: str = ""
    reference: str = ""  # answer text (NLL, judge), or the exact number (arithmetic, gsm8k)
    check: dict[str, Any] = field(default_factory=dict, hash=False)  # IFEval-style check

    @property
    def item_id(self) -> str:
        return content_hash([self.suite, self.instruction, self.input, self.reference, self.check], length=16)

    @property
    def text(self) -> str:
        """Everything of the item a training row could have copied (for the contamination check)."""
        return "\n".join(part for part in (self.instruction, self.input, self.reference) if part)


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"{path}: no such eval file")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            raise EvalDataError(f"{path}:{number}: not JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise EvalDataError(f"{path}:{number}: expected a JSON object")
        rows.append(row)
    return rows


def _field(row: dict, names: tuple[str, ...], where: str) -> str:
    for name in names:
        if isinstance(row.get(name), str):
            return row[name]
    raise EvalDataError(f"{where}: needs a text field {' or '.join(names)}")


def heldout_items(path: str | Path, limit: int | None = None) -> list[EvalItem]:
    """Held-out pairs (instruction, input, output): their reference answers are scored teacher-forced."""
    items = []
    for number, row in enumerate(read_jsonl(path), start=1):
        where = f"{path}:{number}"
        items.append(
            EvalItem(
                HELDOUT_NLL,
                _field(row, ("instruction", "question"), where),
                row.get("input") or "",
                _field(row, ("output", "answer"), where),
            )
        )
    return items[:limit]


def gsm8k_items(path: str | Path, limit: int | None = None) -> list[EvalItem]:
    """GSM8K-format rows (`question`, `answer` ending in `#### N`); rows without the marker are not this suite's."""
    items = []
    for number, row in enumerate(read_jsonl(path), start=1):
        where = f"{path}:{number}"
        answer = reference_number(_field(row, ("answer", "output"), where))
        if answer is not None:
            question = _field(row, ("question", "instruction"), where)
            items.append(EvalItem(GSM8K, f"{question}\n{ARITHMETIC_HINT}", "", answer))
    return items[:limit]


def judge_items(path: str | Path, limit: int | None = None) -> list[EvalItem]:
    """Open-ended held-out instructions for the pairwise judge (GSM8K-style rows are left to the gsm8k suite)."""
    items = [
        EvalItem(JUDGE, i.instruction, i.input, i.reference)
        for i in heldout_items(path)
        if reference_number(i.reference) is None
    ]
    return items[:limit]


# -- generated arithmetic word problems ---------------------------------------------------------

_NAMES = ("Ada", "Ben", "Chen", "Dana", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun")
_THINGS = ("apples", "stickers", "marbles", "books", "coins", "shells", "cards", "pencils")


def _arithmetic_problem(rng: random.Random) -> tuple[str, int]:
    name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
    a, b, c = rng.randint(5, 60), rng.randint(2, 9), rng.randint(1, 20)
    form = rng.randrange(4)
    if form == 0:
        return f"{name} has {a} {thing} and gets {c} more. How many {thing} does {name} have now?", a + c
    if form == 1:
        return f"{name} has {a + c} {thing} and gives away {c}. How many {thing} are left?", a
    if form == 2:
        return f"{name} buys {b} bags with {c} {thing} in each bag. How many {thing} is that in total?", b * c
    return f"{name} shares {b * c} {thing} equally among {b} friends. How many {thing} does each friend get?", c


def arithmetic_items(n: int, seed: int = 0) -> list[EvalItem]:
    """`n` word problems with exact integer answers; same (n, seed, SUITE_VERSION) -> same items."""
    rng = random.Random(f"arithmetic-{SUITE_VERSION}-{seed}")

    def draw(_: int) -> EvalItem:
        question, answer = _arithmetic_problem(rng)
        return EvalItem(ARITHMETIC, f"{question}\n{ARITHMETIC_HINT}", "", str(answer))

    return distinct_items(draw, n)


def distinct_items(draw: Callable[[int], EvalItem], n: int) -> list[EvalItem]:
    """`n` items with distinct ids (a repeated item would be counted twice and break pairing)."""
    items: dict[str, EvalItem] = {}
    for attempt in range(n * 50):
        if len(items) == n:
            break
        item = draw(attempt)
        items.setdefault(item.item_id, item)
    if len(items) < n:
        raise ValueError(f"only {len(items)} distinct items can be generated, not {n}")
    return list(items.values())


# -- generated instruction-following prompts -------------------------------------------------------

_TOPICS = ("the ocean", "autumn", "bicycles", "coffee", "libraries", "volcanoes", "rain", "chess", "bread", "trains")
_IFEVAL_FORMS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("Describe {topic} using only lowercase letters.", {"kind": "lowercase"}),
    ("Describe {topic} in at most 30 words.", {"kind": "max_words", "n": 30}),
    ("Write at least 40 words about {topic}.", {"kind": "min_words", "n": 40}),
    ("Describe {topic} in at most 2 sentences.", {"kind": "max_sentences", "n": 2}),
    ("Give exactly 3 facts about {topic} as a bulleted list using '- '.", {"kind": "bullet_count", "n": 3}),
    (
        "Write two sentences about {topic} that use the words 'blue' and 'quiet'.",
        {"kind": "required_words", "words": ["blue", "quiet"]},
    ),
    ("Describe {topic} without using the words 'the' or 'and'.", {"kind": "forbidden_words", "words": ["the", "and"]}),
    ('Give a JSON object with keys "topic" and "summary" about {topic}. Output only the JSON.', {"kind": "valid_json"}),
    (
        "Write a short note about {topic} and end it with the exact phrase 'Is there anything else?'",
        {"kind": "ends_with", "phrase": "Is there anything else?"},
    ),
    ("Write exactly 2 paragraphs about {topic}, separated by a blank line.", {"kind": "paragraph_count", "n": 2}),
)


def ifeval_items(n: int, seed: int = 0) -> list[EvalItem]:
    """`n` prompts cycling through every check kind, topics drawn from a seeded generator."""
    rng = random.Random(f"ifeval-{SUITE_VERSION}-{seed}")

    def draw(i: int) -> EvalItem:
        template, check = _IFEVAL_FORMS[i % len(_IFEVAL_FORMS)]
        return EvalItem(IFEVAL, template.format(topic=rng.choice(_TOPICS)), "", "", dict(check))

    return distinct_items(draw, n)


EVAL_FILE_ENV = "REFLECTION_EVAL_FILE"


def default_eval_file() -> str:
    """$REFLECTION_EVAL_FILE when set, else the demo's held-out set (no row shared with the demo train set)."""
    import os

    from reflection_assets.demo_data import DEMO_EVAL_PATH

    return os.environ.get(EVAL_FILE_ENV) or str(DEMO_EVAL_PATH)
