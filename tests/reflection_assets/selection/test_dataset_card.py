"""The dataset card: a Hugging Face datasets card whose header carries the license, size and counts."""

from __future__ import annotations

import pandas as pd
from huggingface_hub import DatasetCard

from reflection_assets.selection.card import (
    CardFacts,
    SourceFile,
    read_card_counts,
    size_category,
    source_license,
    source_sha256,
    write_card,
)


def _facts(sources: list[SourceFile], **over) -> CardFacts:
    fields = dict(
        title="Selected", rows=3, sources=sources, teacher={"backend": "openai", "model": "teacher-7b"},
        student="bundled", prompt_version="reflect-v2", selection_rule="IFD < 1 and r-IFD < 1.",
        thresholds={"max_ifd": 1.0, "max_rifd": 1.0}, decision_counts={"total_rows": 5, "total_selected": 4},
        decontamination={"n": 13, "benchmarks": {"gsm8k.jsonl": 2, "evaluation:judge": 3}, "rows_decontaminated": 1,
                         "per_benchmark": {"gsm8k.jsonl": 1},
                         "matches": [{"row_id": "r9", "benchmark": "gsm8k.jsonl", "item": "q1", "shared_ngrams": 8}]},
        ablation_verdict=None, dagster_run="run-123", mlflow_run="http://127.0.0.1:5000/#/experiments/1/runs/abc",
        data_files={"alpaca": "selected.alpaca.parquet", "chat": "selected.chat.parquet"},
    )
    return CardFacts(**{**fields, **over})


def test_license_and_hash_come_from_the_source(tmp_path):
    folder = tmp_path / "alpaca_clean"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n# Alpaca\n")
    pd.DataFrame({"instruction": ["a"], "output": ["b"]}).to_parquet(folder / "train.parquet")
    plain = tmp_path / "rows.jsonl"
    plain.write_text('{"instruction": "a", "output": "b"}\n')
    assert source_license(str(folder)) == "cc-by-4.0"
    assert source_license(str(plain)) is None  # a bare file states no license
    assert len(source_sha256(str(plain))) == 64 and source_sha256("org/hub-dataset") == ""
    before = source_sha256(str(folder))
    (folder / "train.parquet").write_bytes(b"changed")
    assert source_sha256(str(folder)) != before


def test_card_header_and_body(tmp_path):
    sources = [SourceFile("alpaca", "data/alpaca", "ab" * 32, "cc-by-4.0", 2), SourceFile("mine", "m.jsonl", "", None,
                                                                                        1)]
    path = write_card(tmp_path, _facts(sources))
    card = DatasetCard(path.read_text())
    assert card.data.license == "cc-by-4.0"
    assert card.data.task_categories == ["text-generation"] and card.data.size_categories == ["n<1K"]
    assert card.data.configs[1] == {"config_name": "chat", "data_files": [{"split": "train",
                                                                          "path": "selected.chat.parquet"}]}
    assert read_card_counts(path) == {
        "rows": 3, "rows_per_source": {"alpaca": 2, "mine": 1}, "decision_counts": {"total_rows": 5,
                                                                                    "total_selected": 4},
        "rows_decontaminated": 1, "decontamination_per_benchmark": {"gsm8k.jsonl": 1},
    }
    for fact in ("ab" * 32, "teacher-7b", "reflect-v2", "IFD < 1 and r-IFD < 1.", "| max_ifd | 1.0 |",
                 "| gsm8k.jsonl | 2 | 1 |", "| evaluation:judge | 3 | 0 |", "| r9 | gsm8k.jsonl | q1 | 8 |",
                 "run-123", "runs/abc", "No ablation report existed", "word 13-grams"):
        assert fact in card.text, fact


def test_no_stated_license_is_said_not_invented(tmp_path):
    path = write_card(tmp_path, _facts([SourceFile("mine", "m.jsonl", "", None, 3)], ablation_verdict="**better**"))
    card = DatasetCard(path.read_text())
    assert card.data.license is None and "no source states one" in card.text and "**better**" in card.text
    assert [size_category(n) for n in (0, 999, 1000, 250_000, 20_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "100K<n<1M", "n>10M"]
