"""Exports' decontamination: benchmark files read as named, overlapping training rows dropped and named."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from reflection_assets.evaluation import contamination
from reflection_assets.evaluation.suites import EvalItem
from reflection_assets.ngrams import ngrams
from reflection_assets.selection.decontamination import (
    ContaminationIndex,
    DecontaminationError,
    benchmark_specs,
    build_index,
    decontaminate,
    evaluation_benchmark,
    ngram_size,
    read_benchmark,
)

QUESTION = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."
OTHER = "A train leaves the station at noon travelling at sixty miles per hour towards the coast."


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_the_evaluation_check_and_the_exports_share_one_ngram_function():
    assert contamination.ngrams is ngrams
    assert len(ngrams(QUESTION)) == len(QUESTION.split()) - 12
    assert len(ngrams(QUESTION, 5)) == len(QUESTION.split()) - 4


def test_benchmark_files_in_each_format_with_the_text_field_found_or_named(tmp_path):
    jsonl = _jsonl(tmp_path / "gsm8k_test.jsonl", [{"id": "q1", "question": QUESTION, "answer": "72"}])
    pd.DataFrame({"problem": [OTHER], "solution": ["x"]}).to_parquet(tmp_path / "math.parquet")
    pd.DataFrame({"body": [OTHER], "prompt": ["short"]}).to_csv(tmp_path / "mine.csv", index=False)

    (item,) = read_benchmark(str(jsonl))
    assert (item.benchmark, item.item, item.text) == ("gsm8k_test.jsonl", "q1", QUESTION)
    (item,) = read_benchmark(str(tmp_path / "math.parquet"))
    assert (item.benchmark, item.item) == ("math.parquet", OTHER[:80])  # no id: the first 80 characters
    (item,) = read_benchmark(f"{tmp_path / 'mine.csv'}::body")  # named field over the detected `prompt`
    assert item.text == OTHER
    env = {"REFLECTION_DECONTAMINATE": f" {jsonl} ,{tmp_path / 'mine.csv'}::body,"}
    assert benchmark_specs(env) == [str(jsonl), f"{tmp_path / 'mine.csv'}::body"]


@pytest.mark.parametrize(
    ("write", "spec", "message"),
    [
        (None, "missing.jsonl", "REFLECTION_DECONTAMINATE: missing.jsonl: no such file"),
        (lambda p: p.write_text("{not json\n"), "bad.jsonl", "bad.jsonl: cannot be read"),
        (lambda p: _jsonl(p, [{"answer": "1"}]), "plain.jsonl", "plain.jsonl: no text field among"),
        (lambda p: _jsonl(p, [{"question": "q"}]), "named.jsonl::body", "named.jsonl: no field 'body'"),
        (lambda p: p.write_text("x"), "notes.txt", "notes.txt: not a .jsonl, .json, .parquet or .csv file"),
    ],
)
def test_an_unusable_benchmark_file_is_named_in_the_error(tmp_path, write, spec, message):
    path = tmp_path / spec.split("::")[0]
    if write is not None:
        write(path)
    with pytest.raises(DecontaminationError) as error:
        read_benchmark(str(tmp_path / spec) if write is not None else spec)
    assert message in str(error.value)


def test_ngram_size_setting():
    assert ngram_size({}) == 13 and ngram_size({"REFLECTION_DECONTAMINATE_NGRAM": "8"}) == 8
    for bad in ("0", "x", "-3"):
        with pytest.raises(DecontaminationError, match="REFLECTION_DECONTAMINATE_NGRAM"):
            ngram_size({"REFLECTION_DECONTAMINATE_NGRAM": bad})


def test_a_planted_benchmark_row_is_dropped_and_named_and_the_rest_kept(tmp_path):
    bench = _jsonl(tmp_path / "gsm8k_test.jsonl", [{"id": "q1", "question": QUESTION}, {"id": "q2", "question": OTHER}])
    item = EvalItem("heldout_nll", "Explain why the sky looks blue on a clear day to a curious young child please.")
    index = build_index(evaluation_benchmark({"heldout_nll": [item]}), env={"REFLECTION_DECONTAMINATE": str(bench)})
    assert index.benchmarks() == {"evaluation:heldout_nll": 1, "gsm8k_test.jsonl": 2}
    frame = pd.DataFrame({
        "row_id": ["planted", "clean", "eval_copy", "short"],
        "instruction": ["Solve this: " + QUESTION, "Name three colours.", "Answer:", "Natalia sold clips to 48"],
        "input": ["", None, item.instruction.upper(), ""],  # case and punctuation do not hide an overlap
        "output": ["72", "Red, green, blue.", "Rayleigh scattering.", "ok"],
    })
    result = decontaminate(frame, index)
    assert result.kept["row_id"].tolist() == ["clean", "short"]  # 12 shared words are not an overlap
    assert result.records() == [
        {"row_id": "planted", "benchmark": "gsm8k_test.jsonl", "item": "q1", "shared_ngrams": 8},
        {"row_id": "eval_copy", "benchmark": "evaluation:heldout_nll", "item": item.item_id, "shared_ngrams": 4},
    ]
    assert result.per_benchmark() == {"evaluation:heldout_nll": 1, "gsm8k_test.jsonl": 1}
    assert result.labels(frame["row_id"]).tolist() == ["gsm8k_test.jsonl: q1", "", f"evaluation:heldout_nll: "
                                                       f"{item.item_id}", ""]
    # A smaller n finds the 5-word overlap the default misses.
    assert decontaminate(frame, ContaminationIndex(index.items, n=5)).kept["row_id"].tolist() == ["clean"]
