"""Served evaluation (`ServedEvalBackend`, `served_adapters`) against a loopback vLLM running the bundled student.

The server (tests/support/fake_vllm.py) runs the same fp32 weights and PEFT adapter as the
in-process `Evaluator`, so greedy texts must be equal and held-out NLLs equal to float noise; an
adapter routed wrongly, a prompt sent differently or an off-by-one in the scored answer shows up
far past the tolerance.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import pandas as pd
import pytest

from reflection_assets.defs.partitions import SEEDS, arm_key
from reflection_assets.demo_data import DEMO_EVAL_PATH
from reflection_assets.evaluation.cache import EvalOutputCache
from reflection_assets.evaluation.checkpoints import attach_adapters, models_under_test
from reflection_assets.evaluation.harness import ARITHMETIC_TASK, run_harness, write_arithmetic_task
from reflection_assets.evaluation.runner import EvalSettings, Evaluator, build_items
from reflection_assets.evaluation.suites import GENERATED_SUITES, HELDOUT_NLL
from reflection_assets.http_retries import RetryPolicy
from reflection_assets.model_store import local_dir
from reflection_assets.served.adapters import served_adapters
from reflection_assets.served.client import ServedModelError, ServedStudent
from reflection_assets.served.evaluation import SERVED_MARKER, ServedEvalBackend
from support.fake_vllm import FakeVllm, base_model
from support.lora_adapter import make_adapter
from tests.reflection_assets.defs.assets.test_evaluation_assets import (  # the tiny base, its adapters, the stand-ins
    SHORT_ANSWERS,
    TRAINED_ARMS,
    resources,
    stand_in_assets,
    tiny_checkpoints,  # noqa: F401 - a fixture
)

pytestmark = pytest.mark.slow  # the bundled model, one loopback server per test

SETTINGS = EvalSettings(
    eval_file=str(DEMO_EVAL_PATH), gsm8k_file=str(DEMO_EVAL_PATH), items_per_suite=2, max_new_tokens=12, lm_eval=False
)
FAST = RetryPolicy(max_concurrency=4, max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.05)
ARM, KEY = "selective", "0123456789abcdef"


def checkpoint_rows(adapter: Path, arm: str = ARM, key: str = KEY) -> pd.DataFrame:
    return pd.DataFrame([{"arm": arm, "adapter_path": str(adapter), "checkpoint_key": key}])


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_adapter(tmp_path_factory.mktemp("lora") / ARM)


@pytest.fixture(scope="module")
def in_process(adapter: Path):
    """The bundled student with the adapter attached under the arm's name (a private copy of the weights)."""
    model, tokenizer, _ = base_model("bundled")
    return attach_adapters(copy.deepcopy(model), checkpoint_rows(adapter)), tokenizer


@pytest.fixture(scope="module")
def items() -> dict:
    built = build_items(SETTINGS)
    # Two arithmetic items (lm-eval's task), one of each other generated suite, three held-out answers.
    return {suite: values[:1] for suite, values in built.items()} | {
        "arithmetic": built["arithmetic"][:2],
        HELDOUT_NLL: built[HELDOUT_NLL][:3],
    }


def served_backend(fake: FakeVllm, api_key: str | None = None) -> ServedEvalBackend:
    tokenizer = base_model("bundled")[1]
    return ServedEvalBackend(ServedStudent(fake.url, "smollm2", api_key, FAST), tokenizer, local_dir("bundled")[0])


def test_served_answers_and_likelihoods_equal_the_in_process_ones(in_process, adapter, items, tmp_path):
    model, tokenizer = in_process
    generated = [i for suite in GENERATED_SUITES for i in items.get(suite, [])]
    local = Evaluator(model, tokenizer, local_dir("bundled")[1], SETTINGS, EvalOutputCache(tmp_path / "a.duckdb"))
    local_models = models_under_test(checkpoint_rows(adapter))
    want_texts = local.generate(local_models, generated)
    want_nll = local.score_nll(local_models, items[HELDOUT_NLL])

    with FakeVllm(adapters={"sel-listed": str(adapter)}) as fake:
        cache = EvalOutputCache(tmp_path / "b.duckdb")
        backend = served_backend(fake)
        assert backend.identity[1] == SERVED_MARKER and backend.describe() == f"vLLM: smollm2 served at {fake.url}"
        names = served_adapters(backend.server, checkpoint_rows(adapter))
        assert names == {ARM: "sel-listed"}  # found by its folder: nothing loaded
        models = models_under_test(checkpoint_rows(adapter), names)
        served = Evaluator(None, tokenizer, None, SETTINGS, cache, log=lambda _: None, backend=backend)
        texts = served.generate(models, generated)
        nll = served.score_nll(models, items[HELDOUT_NLL])
        sent = fake.count()
        routed = {s.body["model"] for s in fake.requests("/v1/completions")}

        # The same evaluation again: every output from the cache, not one request to the server.
        again = Evaluator(None, tokenizer, None, SETTINGS, cache, log=lambda _: None, backend=served_backend(fake))
        assert again.generate(models, generated) == texts
        assert [r["value"] for r in again.score_nll(models, items[HELDOUT_NLL])] == [r["value"] for r in nll]
        assert fake.count() == sent and again.backend.requests == 0
        assert again.stats["generated"] == 0 and again.stats["nll_scored"] == 0

    assert routed == {"smollm2", "sel-listed"}
    assert sent == backend.requests == 2 * (len(generated) + len(items[HELDOUT_NLL]))
    assert texts == want_texts  # keys are (model name, item id): the base's and the arm's
    assert [texts[(ARM, i.item_id)] for i in generated] != [texts[("base", i.item_id)] for i in generated]
    for got, want in zip(nll, want_nll):
        assert (got["model"], got["item_id"]) == (want["model"], want["item_id"])
        assert math.isclose(got["value"], want["value"], abs_tol=1e-4), (got, want)
    assert not math.isclose(nll[-1]["value"], nll[len(items[HELDOUT_NLL]) - 1]["value"], abs_tol=1e-4)  # arm != base


def test_an_adapter_the_server_lacks_is_loaded_at_run_time_once(adapter):
    with FakeVllm() as fake:
        server = ServedStudent(fake.url, "smollm2", None, FAST)
        assert served_adapters(server, checkpoint_rows(adapter)) == {ARM: f"{ARM}-{KEY[:8]}"}
        assert fake.loaded == {f"{ARM}-{KEY[:8]}": str(adapter.resolve())}
        # A second run finds it listed under its folder and loads nothing.
        assert served_adapters(server, checkpoint_rows(adapter)) == {ARM: f"{ARM}-{KEY[:8]}"}
        assert fake.count("/v1/load_lora_adapter") == 1


def test_an_adapter_loaded_earlier_from_another_folder_is_found_by_its_name(adapter, tmp_path):
    """The checkpoint key names the weights: the same key in a moved folder is the adapter already served."""
    import shutil

    moved = Path(shutil.copytree(adapter, tmp_path / "moved"))
    with FakeVllm() as fake:
        server = ServedStudent(fake.url, "smollm2", None, FAST)
        assert served_adapters(server, checkpoint_rows(adapter)) == {ARM: f"{ARM}-{KEY[:8]}"}
        assert served_adapters(server, checkpoint_rows(moved)) == {ARM: f"{ARM}-{KEY[:8]}"}
        assert fake.count("/v1/load_lora_adapter") == 1  # vLLM would refuse the name a second time


def test_adapters_a_server_cannot_serve_stop_the_run_naming_each_arm(adapter, tmp_path):
    gone = tmp_path / "random"  # never written: a folder the server cannot load either
    rows = pd.concat([checkpoint_rows(adapter), checkpoint_rows(gone, "random", "fedcba9876543210")])
    with FakeVllm(runtime_lora=False) as fake:
        with pytest.raises(ServedModelError) as caught:
            served_adapters(ServedStudent(fake.url, "smollm2", None, FAST), rows)
    message = str(caught.value)
    assert f"{ARM}: {adapter.resolve()}" in message and f"random: {gone.resolve()}" in message
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in message
    modules = f"--lora-modules random={gone.resolve()} {ARM}={adapter.resolve()}"
    assert f"--enable-lora --max-lora-rank 8 {modules}" in message


def test_lm_eval_local_completions_gives_the_in_process_samples(
    in_process, adapter, items, tmp_path, monkeypatch, capsys, caplog
):
    """lm-eval's own task machinery over the server: per item, the prompt, text, extracted answer and
    score of HFLM on the PeftModel, for the base and the adapter; the key reaches the server only."""
    model, tokenizer = in_process
    folder = write_arithmetic_task(items["arithmetic"], tmp_path / "task")
    want = run_harness(model, tokenizer, [None, ARM], [ARITHMETIC_TASK], folder)
    monkeypatch.setenv("OPENAI_API_KEY", "not-this-one")  # lm-eval's default source of the key: must not be read
    caplog.set_level(logging.INFO)
    with FakeVllm(adapters={"sel": str(adapter)}, api_key="s3cret-key") as fake:
        backend = served_backend(fake, api_key="s3cret-key")
        got = backend.harness([None, "sel"], [ARITHMETIC_TASK], folder, None)
        auth = {s.auth for s in fake.requests()}
    assert auth == {"Bearer s3cret-key"}
    assert "s3cret-key" not in capsys.readouterr().err + caplog.text
    for served_name, local_name in ((None, None), ("sel", ARM)):
        assert len(got[served_name]) == len(items["arithmetic"])
        for mine, theirs in zip(got[served_name], want[local_name]):
            assert (mine.task, mine.doc_index, mine.prompt) == (theirs.task, theirs.doc_index, theirs.prompt)
            assert mine.response.strip() == theirs.response.strip()
            assert (mine.output, mine.score) == (theirs.output, theirs.score)
    assert [s.response for s in got[None]] != [s.response for s in got["sel"]]


def test_eval_scores_runs_on_the_served_student(tiny_checkpoints, tmp_path, dagster_instance):  # noqa: F811
    """The asset with `base_url` set: tokenizer only here, adapters loaded on the server, every suite
    there (lm-eval included), the backend recorded and the key nowhere in what is stored."""
    import dagster as dg

    from reflection_assets.defs.assets.evaluation import eval_scores
    from resources.student import StudentModel

    root = tiny_checkpoints
    database = tmp_path / "warehouse.duckdb"
    stand_ins = stand_in_assets(root)
    dagster_instance.add_dynamic_partitions(SEEDS, ["0"])
    for arm in ("selective", "random", "ifd_topk"):
        assert dg.materialize(
            stand_ins, partition_key=arm_key(arm), instance=dagster_instance, resources=resources(root, database)
        ).success
    config = {"ops": {"eval_scores": {"config": {"items_per_suite": 2, "max_new_tokens": SHORT_ANSWERS,
                                                 "judge": False}}}}
    with FakeVllm(served_name="tiny", model_ref=str(root / "base"), api_key="k3y-never-stored") as fake:
        student = StudentModel(model=str(root / "base"), base_url=fake.url, served_model="tiny",
                               api_key="k3y-never-stored", max_attempts=2)
        result = dg.materialize(
            [*stand_ins, eval_scores], selection=[eval_scores], instance=dagster_instance,
            resources={**resources(root, database), "student": student}, run_config=config,
        )
        loaded, url = dict(fake.loaded), fake.url
    assert result.success
    scores = result.output_for_node("eval_scores")
    assert set(scores["model"]) == {"base", *TRAINED_ARMS}
    assert "lm_eval_arithmetic" in set(scores["suite"])
    assert set(loaded) == {f"{arm}-{f'key-{arm}'[:8]}" for arm in TRAINED_ARMS}
    meta = dagster_instance.get_latest_materialization_event(dg.AssetKey("eval_scores")).asset_materialization.metadata
    assert meta["student_backend"].value == f"vLLM: tiny served at {url}"
    assert meta["served_adapters"].value == {arm: f"{arm}-{f'key-{arm}'[:8]}" for arm in TRAINED_ARMS}
    logs = "\n".join(str(e.user_message) for e in dagster_instance.all_logs(result.run_id))
    assert f"student: vLLM: tiny served at {url}" in logs
    assert "k3y-never-stored" not in logs + str(meta)

