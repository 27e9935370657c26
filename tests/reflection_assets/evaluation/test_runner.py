"""The evaluator on a tiny PeftModel: rows per model x suite x item, and a cache that makes a
re-run free and a new arm cost only itself."""

from reflection_assets.demo_data import DEMO_EVAL_PATH
from reflection_assets.evaluation.cache import EvalOutputCache
from reflection_assets.evaluation.judge import one_by_one
from reflection_assets.evaluation.runner import BASE, EvalSettings, Evaluator, ModelUnderTest, build_items, evaluate

SETTINGS = EvalSettings(
    eval_file=str(DEMO_EVAL_PATH), gsm8k_file=str(DEMO_EVAL_PATH), items_per_suite=2, max_new_tokens=6, lm_eval=False
)
BASE_MODEL = ModelUnderTest(BASE, None, "")
FIRST, SECOND = ModelUnderTest("first", "first", "key-1"), ModelUnderTest("second", "second", "key-2")


def test_a_rerun_is_free_and_a_new_arm_costs_only_itself(tiny_peft, tmp_path):
    model, tokenizer = tiny_peft
    items = build_items(SETTINGS)
    generated_items = sum(len(items[s]) for s in ("arithmetic", "ifeval", "gsm8k", "judge"))
    cache = EvalOutputCache(tmp_path / "w.duckdb")

    def run(models):
        evaluator = Evaluator(model, tokenizer, "tiny", SETTINGS, cache, log=lambda _: None)
        return evaluate(evaluator, models, items), evaluator.stats

    first, stats = run([BASE_MODEL, FIRST])
    assert stats["generated"] == 2 * generated_items and stats["nll_scored"] == 2 * len(items["heldout_nll"])
    assert set(first["model"]) == {BASE, "first"}
    assert "judge" not in set(first["suite"])  # no judge given

    again, stats = run([BASE_MODEL, FIRST])
    assert stats["generated"] == 0 and stats["nll_scored"] == 0
    assert again.equals(first)

    grown, stats = run([BASE_MODEL, FIRST, SECOND])
    assert stats["generated"] == generated_items and stats["nll_scored"] == len(items["heldout_nll"])
    assert grown[grown["model"] != "second"].reset_index(drop=True).equals(first)


def test_reflection_style_prompts_with_the_training_system_prompt(tiny_peft, tmp_path):
    model, tokenizer = tiny_peft
    settings = EvalSettings(**{**SETTINGS.record(), "response_style": "reflection"})
    assert settings.system.startswith("You are a world-class AI system")
    evaluator = Evaluator(model, tokenizer, "tiny", settings, EvalOutputCache(tmp_path / "w.duckdb"))
    prompt = tokenizer.decode(list(evaluator.prompt(build_items(settings)["arithmetic"][0])))
    assert "<output>" in prompt  # the training system prompt asks for the format


def test_a_pass_that_dies_mid_way_keeps_its_finished_batches(tiny_peft, tmp_path, monkeypatch):
    """Generations are saved as rows finish: the re-run after a crash makes only the unsaved ones."""
    model, tokenizer = tiny_peft
    settings = EvalSettings(**{**SETTINGS.record(), "batch_tokens": 160})  # a small running batch
    items = build_items(settings)
    generated_items = sum(len(items[s]) for s in ("arithmetic", "ifeval", "gsm8k", "judge"))
    cache = EvalOutputCache(tmp_path / "w.duckdb")
    crashing = Evaluator(model, tokenizer, "tiny", settings, cache, log=lambda _: None)
    real_step, handed = crashing.engine._step, []
    real_save = cache.put

    def dies_once_rows_were_saved(*args, **kwargs):
        if len(handed) >= 3:
            raise KeyboardInterrupt("killed")
        return real_step(*args, **kwargs)

    def counting_put(kind, fresh):
        handed.append(len(fresh)) if kind == "generation" else None
        return real_save(kind, fresh)

    monkeypatch.setattr(crashing.engine, "_step", dies_once_rows_were_saved)
    monkeypatch.setattr(cache, "put", counting_put)
    try:
        evaluate(crashing, [BASE_MODEL, FIRST], items)
    except KeyboardInterrupt:
        pass
    saved = sum(handed)
    assert cache.count("generation") == saved > 0 and saved < 2 * generated_items  # died in the pass
    monkeypatch.setattr(cache, "put", real_save)

    evaluator = Evaluator(model, tokenizer, "tiny", settings, cache, log=lambda _: None)
    resumed = evaluate(evaluator, [BASE_MODEL, FIRST], items)
    assert evaluator.stats["generated_cached"] == saved
    assert evaluator.stats["generated"] == 2 * generated_items - saved
    fresh = evaluate(Evaluator(model, tokenizer, "tiny", settings, EvalOutputCache(tmp_path / "x.duckdb"),
                               log=lambda _: None), [BASE_MODEL, FIRST], items)
    assert resumed.equals(fresh)


def test_an_out_of_memory_generation_batch_is_halved_and_each_answer_saved_once(tiny_peft, tmp_path):
    """The engine halves a batch that runs out of memory (support.oom checks the retry runs outside the
    except block, the failed forward's tensors gone); the evaluator saves every answer once, as without it."""
    from support.oom import decoder, simulated_oom

    model, tokenizer = tiny_peft
    items = build_items(SETTINGS)
    generated = [i for s in ("arithmetic", "ifeval", "gsm8k", "judge") for i in items[s]]
    models = [BASE_MODEL, FIRST]
    want = Evaluator(model, tokenizer, "tiny", SETTINGS, EvalOutputCache(tmp_path / "x.duckdb"), log=lambda _: None)
    cache = EvalOutputCache(tmp_path / "w.duckdb")
    evaluator = Evaluator(model, tokenizer, "tiny", SETTINGS, cache, log=lambda _: None)
    saved: list[str] = []
    real_put = cache.put
    cache.put = lambda kind, rows: saved.extend(rows) or real_put(kind, rows)
    with simulated_oom(decoder(model), max_rows=3) as oom:
        texts = evaluator.generate(models, generated)
    assert oom.failures > 0 and oom.retries > 0
    assert texts == want.generate(models, generated)
    assert len(saved) == len(set(saved)) == len(models) * len(generated) == cache.count("generation")
    assert evaluator.stats["generated"] == len(models) * len(generated)


def test_seeds_of_an_arm_are_scored_apart_truncation_is_flagged_and_the_judge_flips_are_rows(tiny_peft, tmp_path):
    model, tokenizer = tiny_peft
    items = build_items(SETTINGS)
    evaluator = Evaluator(model, tokenizer, "tiny", SETTINGS, EvalOutputCache(tmp_path / "w.duckdb"), log=print)
    evaluator.judge_name = "a position-biased judge"
    reseeded = ModelUnderTest("first", "first", "key-1b", seed=1)  # same adapter here: a different key
    first_position = one_by_one(lambda messages, options: [0.9, 0.1])  # "1" whatever the order

    scores = evaluate(evaluator, [BASE_MODEL, FIRST, reseeded], items, choose=first_position, judge_identity="j")
    firsts = scores[scores["model"] == "first"]
    assert set(firsts["seed"]) == {0, 1}
    # A tiny random model never stops within 6 tokens: every generation is cut and said so.
    generated = scores[scores["suite"].isin(["arithmetic", "ifeval", "gsm8k"])]
    assert generated["truncated"].all() and not scores.loc[scores["suite"] == "heldout_nll", "truncated"].any()
    flips = scores[scores["metric"] == "position_flip"]
    assert len(flips) == 2 * len(items["judge"]) and (flips["value"] == 1.0).all()
    assert (scores.loc[scores["suite"] == "judge", "judge"] == "a position-biased judge").all()
    assert (scores.loc[scores["metric"] == "judge_score", "value"] == 0.0).all()  # position bias: ties


def test_duplicate_eval_items_are_dropped_with_a_reason(tmp_path):
    import json

    path = tmp_path / "eval.jsonl"
    rows = [{"instruction": "Name a colour.", "output": "Blue."}] * 2 + [{"instruction": "Say hi.", "output": "Hi."}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    dropped: list[str] = []
    items = build_items(EvalSettings(eval_file=str(path), gsm8k_file=str(path), items_per_suite=2), dropped)
    assert len(items["heldout_nll"]) == 2 and len(items["judge"]) == 2
    assert dropped == [
        "heldout_nll: duplicate item dropped: 'Name a colour.'",
        "judge: duplicate item dropped: 'Name a colour.'",
    ]


def test_lm_evals_answers_are_the_arithmetic_suites_own(tiny_peft, tmp_path, monkeypatch):
    """lm-eval asks the engine through the evaluator: its prompts are the suite's (same template, same
    length), so every answer is read from the generation cache, and the rows equal lm-eval's own path."""
    import reflection_assets.evaluation.backend as backend

    model, tokenizer = tiny_peft
    monkeypatch.chdir(tmp_path)
    settings = EvalSettings(**{**SETTINGS.record(), "lm_eval": True, "max_new_tokens": {"arithmetic": 160}})
    items = build_items(settings)
    cache = EvalOutputCache(tmp_path / "w.duckdb")
    evaluator = Evaluator(model, tokenizer, "tiny", settings, cache, log=lambda _: None)
    scores = evaluate(evaluator, [BASE_MODEL, FIRST], items)
    asked = 2 * len(items["arithmetic"])
    assert (evaluator.stats["lm_eval_generated_cached"], evaluator.stats["lm_eval_generated"]) == (asked, 0)
    through_engine = scores[scores["suite"] == "lm_eval_arithmetic"].reset_index(drop=True)

    real_harness = backend.InProcessBackend.harness
    monkeypatch.setattr(  # lm-eval's own HFLM generation, as before the engine route
        backend.InProcessBackend, "harness", lambda self, *args, generate=None: real_harness(self, *args)
    )
    plain = Evaluator(model, tokenizer, "tiny", settings, EvalOutputCache(tmp_path / "x.duckdb"), log=lambda _: None)
    again = evaluate(plain, [BASE_MODEL, FIRST], items)
    assert through_engine.equals(again[again["suite"] == "lm_eval_arithmetic"].reset_index(drop=True))
    assert len(through_engine) == asked
