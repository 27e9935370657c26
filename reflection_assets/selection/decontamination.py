"""Decontamination of what leaves the project: training rows that share a word n-gram with a benchmark item.

The benchmarks are the evaluation's own items and any files the user names in
`REFLECTION_DECONTAMINATE` (comma-separated JSONL/Parquet/CSV paths, each optionally `path::field`).
The n-grams are `reflection_assets.ngrams`' (13 words unless `REFLECTION_DECONTAMINATE_NGRAM` says
otherwise), the same measure the evaluation's contamination check uses, so a row dropped here is one
that check would have flagged. A hit names the benchmark and its item, so a reader can check it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from reflection_assets.ngrams import NGRAM, NgramIndex
from reflection_assets.selection.frames import text

if TYPE_CHECKING:
    from reflection_assets.evaluation.suites import EvalItem

DECONTAMINATE_ENV = "REFLECTION_DECONTAMINATE"
NGRAM_ENV = "REFLECTION_DECONTAMINATE_NGRAM"
FIELD_SEPARATOR = "::"  # `path::field` names the text field of a benchmark file
# Text fields tried in this order when a benchmark file's spec names none.
TEXT_FIELDS = ("question", "prompt", "instruction", "problem", "query", "input", "text", "content")
ID_FIELDS = ("id", "item_id", "task_id", "question_id", "problem_id", "idx")
ITEM_LABEL_CHARS = 80
MATCH_COLUMNS = ["row_id", "benchmark", "item", "shared_ngrams"]
# selected_dataset's audit column: "<benchmark>: <item>" for a selected row left out of the export, else "".
CONTAMINATION_COLUMN = "contamination"


class DecontaminationError(ValueError):
    """A decontamination setting the user got wrong: a benchmark file that is missing, unreadable or has
    no text field, or an n-gram size that is not a whole number."""


@dataclass(frozen=True)
class BenchmarkItem:
    benchmark: str  # the file's name, or `evaluation:<suite>` for the project's own items
    item: str  # its id when it has one, else its first 80 characters
    text: str


def ngram_size(env: Mapping[str, str] | None = None) -> int:
    """`REFLECTION_DECONTAMINATE_NGRAM` (a whole number >= 1), else 13."""
    env = os.environ if env is None else env
    raw = (env.get(NGRAM_ENV) or "").strip()
    if not raw:
        return NGRAM
    if not raw.isdigit() or int(raw) < 1:
        raise DecontaminationError(f"{NGRAM_ENV} must be a whole number of words (at least 1), not {raw!r}")
    return int(raw)


def benchmark_specs(env: Mapping[str, str] | None = None) -> list[str]:
    """The benchmark files of `REFLECTION_DECONTAMINATE`, comma-separated (not os.pathsep: `::` names a field)."""
    env = os.environ if env is None else env
    return [spec.strip() for spec in (env.get(DECONTAMINATE_ENV) or "").split(",") if spec.strip()]


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    raise DecontaminationError(f"{DECONTAMINATE_ENV}: {path}: not a .jsonl, .json, .parquet or .csv file")


def read_benchmark(spec: str) -> list[BenchmarkItem]:
    """The items of one benchmark file (`path` or `path::field`); errors name the file."""
    path_text, _, wanted = spec.partition(FIELD_SEPARATOR)
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise DecontaminationError(f"{DECONTAMINATE_ENV}: {path_text}: no such file")
    try:
        table = _read_table(path)
    except DecontaminationError:
        raise
    except Exception as error:  # noqa: BLE001 - pandas and pyarrow raise many kinds; each means "cannot read"
        raise DecontaminationError(
            f"{DECONTAMINATE_ENV}: {path}: cannot be read ({type(error).__name__}: {error})"
        ) from None
    columns = [str(c) for c in table.columns]
    if wanted:
        if wanted not in columns:
            raise DecontaminationError(f"{DECONTAMINATE_ENV}: {path}: no field {wanted!r} (fields: {columns})")
        field_name = wanted
    else:
        field_name = next((name for name in TEXT_FIELDS if name in columns), "")
        if not field_name:
            raise DecontaminationError(
                f"{DECONTAMINATE_ENV}: {path}: no text field among {list(TEXT_FIELDS)} (fields: {columns}); "
                f"name one as {path}{FIELD_SEPARATOR}<field>"
            )
    id_field = next((name for name in ID_FIELDS if name in columns), "")
    texts = text(table[field_name]).tolist()
    ids = text(table[id_field]).tolist() if id_field else [""] * len(texts)
    return [
        BenchmarkItem(path.name, item_id or body[:ITEM_LABEL_CHARS], body)
        for item_id, body in zip(ids, texts)
        if body.strip()
    ]


def evaluation_benchmark(items: Mapping[str, list[EvalItem]]) -> list[BenchmarkItem]:
    """The evaluation's items (`runner.build_items`), named by suite and item id."""
    return [BenchmarkItem(f"evaluation:{suite}", item.item_id, item.text) for suite, group in items.items()
            for item in group]


@dataclass
class ContaminationIndex:
    """The benchmarks' n-grams, built once, asked about every training row of an export."""

    items: list[BenchmarkItem]
    n: int = NGRAM
    _index: NgramIndex[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = NgramIndex(self.n)
        for position, item in enumerate(self.items):
            self._index.add(position, item.text)

    def benchmarks(self) -> dict[str, int]:
        """Benchmark -> how many items it holds."""
        return dict(Counter(item.benchmark for item in self.items))

    def match(self, training_text: str) -> tuple[BenchmarkItem, int] | None:
        """The item sharing the most n-grams with the text (ties: the first listed) and how many, or None."""
        found = self._index.matches(training_text)
        if not found:
            return None
        position, shared = min(found.items(), key=lambda kv: (-kv[1], kv[0]))
        return self.items[position], shared


def build_index(
    evaluation: Iterable[BenchmarkItem], env: Mapping[str, str] | None = None
) -> ContaminationIndex:
    """The evaluation's items plus every file of `REFLECTION_DECONTAMINATE`, at the configured n-gram size."""
    items = list(evaluation)
    for spec in benchmark_specs(env):
        items.extend(read_benchmark(spec))
    return ContaminationIndex(items, ngram_size(env))


def training_texts(frame: pd.DataFrame) -> pd.Series:
    """What a training row shows the model: instruction, input and output together."""
    rows = frame.reindex(columns=["instruction", "input", "output"])
    return text(rows["instruction"]) + "\n" + text(rows["input"]) + "\n" + text(rows["output"])


@dataclass(frozen=True)
class Decontamination:
    """One export's rows split into kept and dropped, with the benchmark item each dropped row overlaps."""

    kept: pd.DataFrame
    matches: pd.DataFrame  # MATCH_COLUMNS, one row per dropped training row
    benchmarks: dict[str, int]  # benchmark -> items checked against
    n: int

    @property
    def dropped(self) -> int:
        return len(self.matches)

    def per_benchmark(self) -> dict[str, int]:
        """Benchmark -> training rows dropped for overlapping it."""
        return {str(k): int(v) for k, v in self.matches["benchmark"].value_counts().sort_index().items()}

    def labels(self, row_ids: pd.Series) -> pd.Series:
        """Per row id: "<benchmark>: <item>" for a dropped row, "" for a kept one (the table's audit column)."""
        named = dict(zip(self.matches["row_id"], self.matches["benchmark"] + ": " + self.matches["item"]))
        return row_ids.astype(str).map(named).fillna("").astype(str)

    def records(self) -> list[dict]:
        return self.matches.to_dict("records")


def decontaminate(frame: pd.DataFrame, index: ContaminationIndex) -> Decontamination:
    """Drop the rows (row_id, instruction, input, output) that share an n-gram with any benchmark item."""
    hits = []
    for row_id, body in zip(frame["row_id"].astype(str), training_texts(frame)):
        found = index.match(body)
        if found is not None:
            item, shared = found
            hits.append({"row_id": row_id, "benchmark": item.benchmark, "item": item.item, "shared_ngrams": shared})
    matches = pd.DataFrame(hits, columns=MATCH_COLUMNS)
    kept = frame[~frame["row_id"].astype(str).isin(set(matches["row_id"]))]
    return Decontamination(kept, matches, index.benchmarks(), index.n)


class CandidateDecontamination:
    """`decontaminate` as an arm's candidate filter (`ArmInputs.usable`): the arm is drawn from clean
    rows, so it still reaches its size; every candidate it dropped is remembered for the report."""

    def __init__(self, index: ContaminationIndex) -> None:
        self.index = index
        self._matches: list[pd.DataFrame] = []

    def __call__(self, candidates: pd.DataFrame) -> pd.DataFrame:
        result = decontaminate(candidates, self.index)
        if result.dropped:
            self._matches.append(result.matches)
        return result.kept

    def merged(self, export: Decontamination) -> Decontamination:
        """`export` (the check of the rows that left) with the candidates dropped before it, one match per row."""
        if not self._matches:
            return export
        matches = pd.concat([*self._matches, export.matches], ignore_index=True)
        matches = matches.drop_duplicates("row_id").sort_values("row_id", kind="mergesort").reset_index(drop=True)
        return replace(export, matches=matches)
