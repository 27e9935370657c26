"""Evaluation of the base student and one LoRA adapter on a real vLLM server, against in-process.

Runs when REFLECTION_TEST_VLLM_URL names a server's /v1 URL serving the bundled SmolLM2 with LoRA
enabled and runtime loading allowed, e.g. `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True scripts/vllm_cpu.sh
serve --enable-lora --max-lora-rank 16`; skips with that reason otherwise. The server must see this
machine's temporary folders (the adapter is loaded from one). Its dtype may differ from in-process
fp32, so NLLs are compared within a few per cent, and the figures are printed (`pytest -s`).
"""

from __future__ import annotations

import copy
import math
import uuid
from pathlib import Path

import pandas as pd
import pytest

from reflection_assets.demo_data import DEMO_EVAL_PATH
from reflection_assets.evaluation.cache import EvalOutputCache
from reflection_assets.evaluation.checkpoints import attach_adapters, models_under_test
from reflection_assets.evaluation.runner import EvalSettings, Evaluator, build_items
from reflection_assets.evaluation.suites import ARITHMETIC, HELDOUT_NLL
from reflection_assets.model_store import load_model_and_tokenizer, local_dir
from reflection_assets.served.adapters import served_adapters
from reflection_assets.served.client import ServedStudent
from reflection_assets.served.evaluation import ServedEvalBackend
from support.lora_adapter import make_adapter

RELATIVE_TOLERANCE = 0.05  # bf16 on the server against fp32 here
pytestmark = pytest.mark.slow

SETTINGS = EvalSettings(
    eval_file=str(DEMO_EVAL_PATH), gsm8k_file=str(DEMO_EVAL_PATH), items_per_suite=3, max_new_tokens=24, lm_eval=False
)


def test_base_and_adapter_on_vllm_match_in_process(vllm: tuple[str, str], tmp_path: Path) -> None:
    url, name = vllm
    adapter = make_adapter(tmp_path / "selective")
    rows = pd.DataFrame([{"arm": "selective", "adapter_path": str(adapter), "checkpoint_key": uuid.uuid4().hex}])
    items = build_items(SETTINGS)
    heldout, arithmetic = items[HELDOUT_NLL][:6], items[ARITHMETIC][:3]

    server = ServedStudent(url, name)
    model, tokenizer, fingerprint = load_model_and_tokenizer("bundled", dtype="float32", device="cpu")
    print(server.check_tokenizer(tokenizer))
    names = served_adapters(server, rows)  # loaded at run time: the server has never seen this folder
    assert names["selective"] == f"selective-{rows.checkpoint_key[0][:8]}"
    backend = ServedEvalBackend(server, tokenizer, local_dir("bundled")[0])
    served = Evaluator(None, tokenizer, None, SETTINGS, EvalOutputCache(tmp_path / "s.duckdb"), backend=backend)
    served_nll = served.score_nll(models_under_test(rows, names), heldout)
    served_texts = served.generate(models_under_test(rows, names), arithmetic)

    local = Evaluator(
        attach_adapters(copy.deepcopy(model), rows), tokenizer, fingerprint, SETTINGS,
        EvalOutputCache(tmp_path / "l.duckdb"),
    )
    local_nll = local.score_nll(models_under_test(rows), heldout)
    local_texts = local.generate(models_under_test(rows), arithmetic)

    print(f"\n{'model':10} {'item':14} {'vLLM NLL':>9} {'in-process':>10} {'rel. diff':>9}")
    for got, want in zip(served_nll, local_nll):
        diff = abs(got["value"] - want["value"]) / max(abs(want["value"]), 1e-9)
        print(f"{got['model']:10} {got['item_id'][:14]:14} {got['value']:9.4f} {want['value']:10.4f} {diff:9.2%}")
        assert math.isfinite(got["value"]) and diff < RELATIVE_TOLERANCE, (got, want)
    same = sum(served_texts[k] == local_texts[k] for k in local_texts)
    print(f"greedy texts identical: {same}/{len(local_texts)} (dtype differences may flip a near tie)")
    for key, text in served_texts.items():
        print(f"  {key}: vLLM {text!r} | in-process {local_texts[key]!r}")
    mean = {m: sum(r["value"] for r in served_nll if r["model"] == m) / len(heldout) for m in ("base", "selective")}
    assert not math.isclose(mean["base"], mean["selective"], rel_tol=1e-3)  # the adapter was really applied
