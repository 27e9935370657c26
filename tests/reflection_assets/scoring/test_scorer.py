import pandas as pd
import pytest

from reflection_assets.schema import Pair, Turn
from reflection_assets.scoring import statuses
from reflection_assets.scoring.metrics import SCORE_COLUMNS
from reflection_assets.scoring.reference import reference_score_pairs
from reflection_assets.scoring.scorer import (
    ScoringConfig,
    plan_pairs,
    score_pairs,
    scores_frame,
    settings_for,
    unique_sequences,
)

PAIRS = [
    Pair(
        instruction="Give three tips for staying healthy .",
        output="Eat well , sleep enough and exercise daily .",
        row_id="a",
    ),
    Pair(instruction="Name a colour .", output="Blue is a colour .", row_id="b"),
    Pair(
        instruction="Translate the sentence into French .",
        input="The cat sleeps .",
        output="Le chat dort .",
        row_id="c",
    ),
    Pair(
        instruction="What is two plus two ?",
        output="Four .",
        system="Be brief .",
        history=(Turn("user", "Name a colour ."), Turn("assistant", "Blue .")),
        row_id="d",
    ),
    Pair(instruction="Name a colour .", output=" ", row_id="empty"),
]
LOSS_FIELDS = ["loss_cond", "loss_alone", "rloss_cond", "rloss_alone"]


@pytest.mark.parametrize("template", ["alpaca", "vicuna", "plain", "chat"])
def test_engine_matches_the_one_at_a_time_reference(chat_student, template):
    config = ScoringConfig(template=template, batch_tokens=64)
    fast = score_pairs(PAIRS, chat_student, config)
    slow = reference_score_pairs(PAIRS, chat_student, config)
    for a, b in zip(fast, slow):
        assert (a.id, a.ifd_status, a.rifd_status, a.n_response_tokens) == (
            b.id,
            b.ifd_status,
            b.rifd_status,
            b.n_response_tokens,
        )
        for field in LOSS_FIELDS:
            x, y = getattr(a, field), getattr(b, field)
            assert (x is None and y is None) or x == pytest.approx(y, abs=1e-5)


def test_statuses_and_missing_scores(llama_student):
    scores = {s.id: s for s in score_pairs(PAIRS, llama_student, ScoringConfig(template="alpaca"))}
    assert scores["a"].ifd_status == "ok" and scores["a"].ifd_ppl > 0 and scores["a"].rifd_status == "ok"
    empty = scores["empty"]
    assert empty.ifd_status == statuses.EMPTY_RESPONSE and empty.rifd_status == statuses.EMPTY_RESPONSE
    assert all(getattr(empty, f) is None for f in LOSS_FIELDS + ["ifd_ppl", "ifd_loss", "rifd_ppl", "rifd_loss"])


def test_identical_texts_are_scored_once(llama_student):
    """The same response under two instructions shares its unconditioned pass; same for r-IFD."""
    same_answer = [
        Pair(instruction="Name a colour .", output="Blue ."),
        Pair(instruction="What is a colour ?", output="Blue ."),
    ]
    same_question = [
        Pair(instruction="Name a colour .", output="Blue ."),
        Pair(instruction="Name a colour .", output="Blue is a colour ."),
    ]
    settings = settings_for(llama_student, ScoringConfig(template="alpaca"))
    assert len(unique_sequences(plan_pairs(llama_student, settings, same_answer))) == 7  # 8 passes, 1 shared
    assert len(unique_sequences(plan_pairs(llama_student, settings, same_question))) == 7
    duplicated = unique_sequences(plan_pairs(llama_student, settings, same_answer + same_answer))
    assert len(duplicated) == 7


def test_ifd_only_marks_rifd_skipped(llama_student):
    scores = score_pairs(PAIRS[:2], llama_student, ScoringConfig(template="alpaca"), rifd=False)
    assert all(s.ifd_status == "ok" and s.rifd_status == statuses.SKIPPED and s.rloss_cond is None for s in scores)
    assert not statuses.passes_below(scores[0].rifd_ppl, scores[0].rifd_status, 1.0)


def test_scores_frame_has_every_column_and_nulls_not_zeros(llama_student):
    frame = scores_frame(PAIRS, llama_student, ScoringConfig(template="alpaca"))
    assert list(frame.columns) == ["row_id"] + SCORE_COLUMNS[1:]
    assert list(frame["row_id"]) == ["a", "b", "c", "d", "empty"]
    empty = frame.set_index("row_id").loc["empty"]
    assert empty["ifd_ppl"] is pd.NA and empty["n_response_tokens"] is pd.NA
    assert str(frame["n_response_tokens"].dtype) == "Int64" and str(frame["ifd_ppl"].dtype) == "Float64"


def test_default_template_is_chat_for_a_chat_student(chat_student, llama_student):
    assert settings_for(chat_student, ScoringConfig()).template == "chat"
    assert settings_for(llama_student, ScoringConfig()).template == "alpaca"


def test_scoring_imports_without_duckdb():
    """The cache is optional: scoring runs where DuckDB is not installed (a GPU box with torch alone)."""
    import subprocess
    import sys

    code = "import sys, reflection_assets.scoring.scorer; assert 'duckdb' not in sys.modules, 'duckdb imported'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0
