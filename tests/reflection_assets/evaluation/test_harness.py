"""lm-eval 0.4.13 on the shipped local task, through one HFLM over a PeftModel, base and adapter."""

from reflection_assets.evaluation.harness import ARITHMETIC_TASK, run_harness, write_arithmetic_task
from reflection_assets.evaluation.suites import arithmetic_items
from reflection_assets.generation.engine import GenerationEngine, GenerationRequest
from reflection_assets.scoring.templates import prompt_ids


def test_lm_eval_runs_the_shipped_task_for_the_base_and_an_adapter(tiny_peft, tmp_path, monkeypatch):
    model, tokenizer = tiny_peft
    items = arithmetic_items(3, seed=5)
    folder = write_arithmetic_task(items, tmp_path / "task")
    monkeypatch.chdir(tmp_path)  # data_files is absolute: the working directory does not matter
    results = run_harness(model, tokenizer, [None, "first"], [ARITHMETIC_TASK], folder)

    assert set(results) == {None, "first"}
    import yaml

    from reflection_assets.evaluation.harness import TASK_DIR

    task = yaml.safe_load((TASK_DIR / f"{ARITHMETIC_TASK}.yaml").read_text())
    length = task["generation_kwargs"]["max_gen_toks"]
    engine = GenerationEngine(model, tokenizer)
    for adapter, samples in results.items():
        assert [s.doc_index for s in samples] == [0, 1, 2]
        for sample, item in zip(samples, items):
            assert item.instruction in sample.prompt
            assert sample.score in (0.0, 1.0)
            assert sample.score == float(sample.output == item.reference)
        # lm-eval used the adapter it was asked for: its greedy text is our engine's for that adapter.
        ours = engine.generate(
            [GenerationRequest(tuple(prompt_ids(tokenizer, "chat", i.instruction)), length, adapter) for i in items]
        )
        assert [s.response.strip() for s in samples] == [o.text.strip() for o in ours]
    assert [s.response for s in results[None]] != [s.response for s in results["first"]]


def test_the_tasks_number_filter_never_takes_punctuation_for_the_answer():
    """lm-eval's regex filter: the last match, the first non-empty group of it."""
    import re

    import yaml

    from reflection_assets.evaluation.harness import ARITHMETIC_TASK, TASK_DIR

    task = yaml.safe_load((TASK_DIR / f"{ARITHMETIC_TASK}.yaml").read_text())
    pattern = re.compile(task["filter_list"][0]["filter"][0]["regex_pattern"])

    def extracted(text):
        last = pattern.findall(text)[-1]
        return next(g for g in last if g) if isinstance(last, tuple) else last

    assert extracted("So the answer is 42...") == "42"
    assert extracted("#### 17\nHope this helps.") == "17"
    assert extracted("It costs $1,234.50 in total.") == "$1,234.50"
    assert extracted("x = -7.") == "-7"


def test_lm_eval_through_the_engine_gives_hflms_samples(tiny_peft, tmp_path, monkeypatch):
    """EngineLM (answers from the project's engine, stop sequences cut from the text) gives lm-eval's own
    samples, prompts, outputs and scores for the base and an adapter; only the local task index is built."""
    from reflection_assets.evaluation import harness

    model, tokenizer = tiny_peft
    items = arithmetic_items(4, seed=7)
    folder = write_arithmetic_task(items, tmp_path / "task")
    monkeypatch.chdir(tmp_path)
    engine = GenerationEngine(model, tokenizer)
    asked: list[tuple] = []

    def generate(adapter, prompts, max_new):
        asked.append((adapter, len(prompts), max_new))
        outputs = engine.generate([GenerationRequest(p, max_new, adapter) for p in prompts])
        return [o.text for o in outputs]

    managers: list[bool] = []
    real_manager = harness.task_manager

    def recording_manager(include_path, tasks=()):
        manager = real_manager(include_path, tasks)
        managers.append(ARITHMETIC_TASK in manager.all_tasks and "gsm8k" not in manager.all_tasks)
        return manager

    monkeypatch.setattr(harness, "task_manager", recording_manager)
    through_engine = run_harness(model, tokenizer, [None, "first"], [ARITHMETIC_TASK], folder, generate=generate)
    through_hflm = run_harness(model, tokenizer, [None, "first"], [ARITHMETIC_TASK], folder)
    assert through_engine == through_hflm
    assert asked == [(None, 4, 160), ("first", 4, 160)] and managers == [True, True]


def test_the_written_task_answers_as_long_as_the_suite_asks(tmp_path):
    import yaml

    items = arithmetic_items(2, seed=1)
    default = yaml.safe_load((write_arithmetic_task(items, tmp_path / "a") / f"{ARITHMETIC_TASK}.yaml").read_text())
    short = yaml.safe_load((write_arithmetic_task(items, tmp_path / "b", 24) / f"{ARITHMETIC_TASK}.yaml").read_text())
    assert default["generation_kwargs"]["max_gen_toks"] == 160  # the suite's default length (SUITE_MAX_NEW_TOKENS)
    assert short["generation_kwargs"]["max_gen_toks"] == 24
    assert short["dataset_kwargs"] == {"data_files": str((tmp_path / "b" / f"{ARITHMETIC_TASK}.jsonl").resolve())}
