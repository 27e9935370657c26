"""The served student against a real vLLM server: IFD / r-IFD from its prompt log-probabilities.

Runs when REFLECTION_TEST_VLLM_URL names a server's /v1 URL serving the bundled SmolLM2
(`scripts/vllm_cpu.sh serve` starts one on 127.0.0.1:8000); skips with that reason otherwise. A URL
that is set but does not answer as vLLM fails: whoever set it meant this test to run.

The server computes in its own dtype (bf16 on vllm-cpu), so the scores are compared with the
in-process fp32 ones within 3 % relative; the largest difference is printed (`pytest -s`).
"""

from __future__ import annotations

import pytest

from reflection_assets.demo_data import DEMO_TRAIN_PATH
from reflection_assets.ingest.readers import read_dataset
from reflection_assets.scoring.scorer import score_pairs
from reflection_assets.scoring.student import load_student
from reflection_assets.served.client import ServedStudent
from reflection_assets.served.scoring import served_student

SCORES = ("ifd_ppl", "rifd_ppl")
LOSSES = ("loss_cond", "loss_alone", "rloss_cond", "rloss_alone")
pytestmark = pytest.mark.slow


def test_served_ifd_and_rifd_match_the_in_process_fp32_scores(vllm: tuple[str, str]) -> None:
    url, model = vllm
    pairs = read_dataset(DEMO_TRAIN_PATH).accepted[:8]
    reference = score_pairs(pairs, load_student("bundled", device="cpu", dtype="float32"))
    student = served_student("bundled", ServedStudent(url, model))  # checks the tokenizer via /tokenize
    assert student.describe().startswith("vLLM: ")
    served = score_pairs(pairs, student)

    worst = {"scores": 0.0, "losses": 0.0}
    assert [s.id for s in served] == [r.id for r in reference]
    for got, want in zip(served, reference):
        assert (got.ifd_status, got.rifd_status) == (want.ifd_status, want.rifd_status), got.id
        assert (got.n_response_tokens, got.n_instruction_tokens) == (want.n_response_tokens, want.n_instruction_tokens)
        for kind, names in (("scores", SCORES), ("losses", LOSSES)):
            for name in names:
                a, b = getattr(got, name), getattr(want, name)
                if b is None:
                    assert a is None, (got.id, name)
                    continue
                worst[kind] = max(worst[kind], abs(a - b) / abs(b))
                if kind == "scores":
                    assert a == pytest.approx(b, rel=0.03), (got.id, name, a, b)
    print(
        f"\nserved ({model} at {url}) vs in-process fp32 on {len(pairs)} demo pairs: largest relative difference "
        f"IFD/r-IFD {worst['scores']:.3%}, losses {worst['losses']:.3%}"
    )
    assert sum(s.ifd_status == "ok" for s in reference) >= 6  # the comparison compared numbers
