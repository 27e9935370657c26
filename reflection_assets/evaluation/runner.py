"""Score the base model and every adapter on every suite: one backend, one shared generation pass.

Output rows are one per model x suite x item x metric (SCORE_COLUMNS), each with the text the
model wrote, so every number in the report can be traced to an answer. Every model output is
cached by content (`EvalOutputCache`): a re-run costs nothing, a new arm only itself. The models
run in this process or on the student's vLLM server (`evaluation.backend`).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from reflection_assets.documented import documented
from reflection_assets.evaluation.backend import EvalBackend, InProcessBackend
from reflection_assets.evaluation.cache import EvalOutputCache, output_key
from reflection_assets.evaluation.checkers import run_check
from reflection_assets.evaluation.extraction import extract_number, output_part
from reflection_assets.evaluation.judge import JUDGE_PROMPT_VERSION, ChooseMany, judge_pairs, position_flipped
from reflection_assets.evaluation.likelihood import NllRequest
from reflection_assets.evaluation.suites import (
    ARITHMETIC,
    GENERATED_SUITES,
    GSM8K,
    HELDOUT_NLL,
    IFEVAL,
    JUDGE,
    LM_EVAL_ARITHMETIC,
    SUITE_VERSION,
    EvalItem,
    arithmetic_items,
    gsm8k_items,
    heldout_items,
    ifeval_items,
    judge_items,
)
from reflection_assets.generation.requests import GenerationRequest
from reflection_assets.reflection70b import REFLECTION_SYSTEM_PROMPT
from reflection_assets.scoring.templates import prompt_ids

if TYPE_CHECKING:
    from reflection_assets.generation.engine import GenerationEngine

BASE = "base"  # the base model's name in the tables (it is evaluated beside the arms, not as one)
SCORE_COLUMNS = [
    "model",
    "suite",
    "item_id",
    "metric",
    "value",
    "output",
    "instruction",
    "reference",
    "adapter_key",
    "suite_version",
    "contaminated",
    "seed",  # the model's training seed (the base: 0); the report averages an arm's items over seeds
    "truncated",  # the generation stopped at its suite's token limit (the checks may then fail it)
    "judge",  # judge rows: who judged (the report says when it is the teacher or the base model)
]
METRICS = {
    HELDOUT_NLL: "nll",
    ARITHMETIC: "exact_match",
    GSM8K: "exact_match",
    IFEVAL: "pass",
    JUDGE: "judge_score",
    LM_EVAL_ARITHMETIC: "exact_match",
}
LOWER_IS_BETTER = {"nll"}
FLIP_METRIC = "position_flip"  # judge rows beside the score: 1 when the verdict flipped with the order
# New tokens per generated suite: long enough that a worked answer ends (truncation is counted).
SUITE_MAX_NEW_TOKENS = {ARITHMETIC: 160, GSM8K: 256, IFEVAL: 192, JUDGE: 192}
RESPONSE_STYLES = ("plain", "reflection")


@dataclass(frozen=True)
class ModelUnderTest:
    name: str  # BASE or the arm
    adapter: str | None  # the adapter's name in the backend (PEFT adapter or served LoRA); None = base
    key: str  # what identifies its weights beside the base fingerprint (the checkpoint key; "" for base)
    seed: int = 0  # the training seed of the adapter (one model per arm x seed)

    @property
    def label(self) -> str:
        """Unique among the models under test: the arm, with its seed when it is not the first."""
        return self.name if self.seed == 0 else f"{self.name}-seed{self.seed}"


@dataclass(frozen=True)
class EvalSettings:
    """Everything that decides the numbers besides the weights; recorded with the scores."""

    eval_file: str = documented(what="held-out pairs (jsonl): the heldout_nll and judge suites")
    gsm8k_file: str = documented(what="GSM8K-format rows (question, answer ending in '#### N'): the gsm8k suite")
    items_per_suite: int = documented(15, "items drawn for each synthetic suite (arithmetic, ifeval)")
    seed: int = documented(0, "seed of the synthetic suites' items")
    max_new_tokens: dict | int = documented(
        what="tokens per generated suite ({suite: tokens}); one number sets every suite",
        default_factory=lambda: dict(SUITE_MAX_NEW_TOKENS),
    )
    template: str = documented("chat", "prompt template of the models under test")
    response_style: str = documented(
        "plain", "plain, or reflection: the Reflection-70B system prompt, and only the <output> part is scored"
    )
    batch_tokens: int | None = documented(None, "tokens per generation batch (unset: the engine's default)")
    lm_eval: bool = documented(True, "also run the arithmetic suite through lm-eval's harness")
    suite_version: str = documented(SUITE_VERSION, "version of the suites' generators (same version, same items)")
    decoding: dict = documented(
        what="how answers are generated (greedy)",
        default_factory=lambda: {"strategy": "greedy", "temperature": 0.0},
    )

    @property
    def system(self) -> str:
        return REFLECTION_SYSTEM_PROMPT if self.response_style == "reflection" else ""

    def record(self) -> dict:
        return asdict(self)


    def tokens_for(self, suite: str) -> int:
        if isinstance(self.max_new_tokens, int):
            return self.max_new_tokens
        return int(self.max_new_tokens.get(suite, SUITE_MAX_NEW_TOKENS.get(suite, 128)))


def build_items(settings: EvalSettings, dropped: list[str] | None = None) -> dict[str, list[EvalItem]]:
    """Every suite's items; a repeated item (same id within a suite) is dropped, its reason appended to `dropped`.

    A duplicate would be scored twice and weigh twice in the paired test.
    """
    n, seed = settings.items_per_suite, settings.seed
    suites = {
        HELDOUT_NLL: heldout_items(settings.eval_file),
        ARITHMETIC: arithmetic_items(n, seed),
        IFEVAL: ifeval_items(n, seed),
        GSM8K: gsm8k_items(settings.gsm8k_file),
        JUDGE: judge_items(settings.eval_file),
    }
    out = {}
    for suite, items in suites.items():
        unique: dict[str, EvalItem] = {}
        for item in items:
            if item.item_id in unique:
                if dropped is not None:
                    dropped.append(f"{suite}: duplicate item dropped: {item.instruction[:60]!r}")
                continue
            unique[item.item_id] = item
        kept = list(unique.values())
        out[suite] = kept[:n] if suite in (GSM8K, JUDGE) else kept
    return out


def _row(
    model: ModelUnderTest,
    item: EvalItem,
    metric: str,
    value: float,
    output: str,
    settings: EvalSettings,
    truncated: bool = False,
    judge: str = "",
) -> dict:
    return {
        "model": model.name,
        "suite": item.suite,
        "item_id": item.item_id,
        "metric": metric,
        "value": float(value),
        "output": output,
        "instruction": item.instruction,
        "reference": item.reference or json.dumps(item.check),
        "adapter_key": model.key,
        "suite_version": settings.suite_version,
        "contaminated": False,
        "seed": model.seed,
        "truncated": bool(truncated),
        "judge": judge,
    }


class Evaluator:
    """One backend and the student's tokenizer; scores models x items with a content cache.

    `model` and `fingerprint` make the in-process backend (the loaded (Peft)model); a served
    evaluation passes `backend` instead and no model.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        fingerprint: str | None,
        settings: EvalSettings,
        cache: EvalOutputCache,
        log: Callable[[str], None] = print,
        backend: EvalBackend | None = None,
    ):
        self.tokenizer, self.settings, self.cache, self.log = tokenizer, settings, cache, log
        if backend is None:
            if model is None or fingerprint is None:
                raise ValueError("an in-process evaluation needs the loaded model and its fingerprint")
            backend = InProcessBackend(model, tokenizer, fingerprint, settings.batch_tokens)
        self.backend = backend
        self.identity = list(backend.identity)
        self.stats = {
            "generated": 0,
            "generated_cached": 0,
            "new_tokens": 0,
            "generation_seconds": 0.0,
            "nll_scored": 0,
            "nll_cached": 0,
            "judged": 0,
            "judged_cached": 0,
            "lm_eval_runs": 0,  # models run through lm-eval (one harness run each)
            "lm_eval_cached": 0,
            "lm_eval_generated": 0,  # lm-eval's answers generated here, and those its suite twin had made
            "lm_eval_generated_cached": 0,
            "truncated": 0,  # generations that stopped at their suite's token limit
        }
        self.judge_name = ""  # who judges, as the report names it (set by the caller)

    @property
    def engine(self) -> GenerationEngine:
        """The in-process backend's generation engine (tests and benchmarks look inside it)."""
        engine = getattr(self.backend, "engine", None)
        if engine is None:
            raise AttributeError(f"{self.backend.describe()} has no in-process generation engine")
        return engine

    def prompt(self, item: EvalItem) -> tuple[int, ...]:
        return tuple(
            prompt_ids(self.tokenizer, self.settings.template, item.instruction, item.input, self.settings.system)
        )

    # -- generation: every generated suite of every model in one pass ---------------------------------

    def generate(self, models: Sequence[ModelUnderTest], items: Sequence[EvalItem]) -> dict[tuple[str, str], dict]:
        """(model label, item id) -> {"text", "finish_reason"}, from the cache or one mixed-adapter pass."""
        wanted = {
            (m.label, i.item_id): (m, self.prompt(i), self.settings.tokens_for(i.suite)) for m in models for i in items
        }
        return self.generate_prompts(wanted)

    def generate_prompts(self, wanted: dict[Any, tuple[ModelUnderTest, tuple[int, ...], int]], what: str = "") -> dict:
        """key -> {"text", "new_tokens", "finish_reason"} for (model, prompt ids, max new tokens) each:
        from the cache, the rest in one mixed-adapter pass saved as rows finish. `what` prefixes the
        counters ("lm_eval_": lm-eval's answers are counted apart from the suites')."""
        import time

        keys = {
            pair: output_key("generation", [*self.identity, m.key, list(p), tokens, self.settings.decoding])
            for pair, (m, p, tokens) in wanted.items()
        }
        cached = self.cache.get(list(set(keys.values())))
        missing = list(dict.fromkeys(keys[pair] for pair in wanted if keys[pair] not in cached))  # each key once
        self.stats[f"{what}generated_cached"] += sum(keys[pair] in cached for pair in wanted)
        if missing:
            first = {key: pair for pair, key in reversed(keys.items())}  # a (model, prompt, length) of each key
            asked = [wanted[first[key]] for key in missing]
            requests = [GenerationRequest(prompt, tokens, model.adapter) for model, prompt, tokens in asked]
            self.log(
                f"generating {len(requests)} answers ({len(wanted) - len(requests)} cached) in one mixed-adapter pass"
            )
            started = time.perf_counter()

            def save(indices: list[int], outputs: list) -> None:
                # Saved as rows finish: a run killed mid-pass keeps every finished answer for the re-run.
                fresh = {
                    missing[i]: {"text": o.text, "new_tokens": o.new_tokens, "finish_reason": o.finish_reason}
                    for i, o in zip(indices, outputs)
                }
                self.cache.put("generation", fresh)
                cached.update(fresh)
                self.stats[f"{what}generated"] += len(outputs)
                self.stats["new_tokens"] += sum(o.new_tokens for o in outputs)

            self.backend.generate(requests, on_batch=save)
            self.stats["generation_seconds"] += time.perf_counter() - started
        return {pair: cached[keys[pair]] for pair in wanted}

    def harness_generate(self, models: Sequence[ModelUnderTest]) -> Any:
        """lm-eval's greedy answers (harness.Generate) through `generate_prompts`, for these models' adapters."""
        by_adapter = {m.adapter: m for m in models}

        def generate(adapter: str | None, prompts: list[tuple[int, ...]], max_new: int) -> list[str]:
            wanted = {k: (by_adapter[adapter], prompt, max_new) for k, prompt in enumerate(prompts)}
            done = self.generate_prompts(wanted, what="lm_eval_")
            return [done[k]["text"] for k in range(len(prompts))]

        return generate

    def score_generated(
        self,
        models: Sequence[ModelUnderTest],
        items: dict[str, list[EvalItem]],
        choose: ChooseMany | None,
        judge_identity: Any,
    ) -> list[dict]:
        generated_items = [i for suite in GENERATED_SUITES for i in items.get(suite, [])]
        outputs = self.generate(models, generated_items)
        texts = {pair: out["text"] for pair, out in outputs.items()}
        rows = []
        for model in models:
            for item in generated_items:
                text = (
                    output_part(texts[(model.label, item.item_id)])
                    if self.settings.response_style == "reflection"
                    else texts[(model.label, item.item_id)]
                )
                truncated = outputs[(model.label, item.item_id)].get("finish_reason") == "length"
                self.stats["truncated"] += int(truncated)
                if item.suite in (ARITHMETIC, GSM8K):
                    value = float(extract_number(text) == item.reference)
                elif item.suite == IFEVAL:
                    value = float(run_check(item.check, text))
                else:
                    continue
                rows.append(_row(model, item, METRICS[item.suite], value, text, self.settings, truncated))
        base = next((m for m in models if m.adapter is None), None)
        if choose is not None and base is not None:
            rows += self.judge(models, base, items.get(JUDGE, []), outputs, choose, judge_identity)
        return rows

    def judge(self, models, base, items, outputs, choose: ChooseMany, judge_identity: Any) -> list[dict]:
        """Each arm's answer against the base's on the same instruction, asked in both orders.

        Beside each verdict a FLIP_METRIC row says whether the judge preferred the same position in
        both orders (its verdict flips with the order: position bias, no information).
        """

        def answer(model, item):
            text = outputs[(model.label, item.item_id)]["text"]
            return output_part(text) if self.settings.response_style == "reflection" else text

        pairs = [(m, i) for m in models if m is not base for i in items]
        keys = {
            (m.label, i.item_id): output_key(
                "judge", [judge_identity, JUDGE_PROMPT_VERSION, i.instruction, i.input, answer(m, i), answer(base, i)]
            )
            for m, i in pairs
        }
        cached = self.cache.get(list(keys.values()))
        # One question per key (two arms that wrote the same answer share it), all asked in one call.
        missing = list({keys[(m.label, i.item_id)]: (m, i) for m, i in pairs}.items())
        missing = [(key, pair) for key, pair in missing if key not in cached]
        asked = [
            (f"{i.instruction}\n\n{i.input}" if i.input else i.instruction, answer(m, i), answer(base, i))
            for _, (m, i) in missing
        ]
        fresh = {
            key: {"verdict": verdict, "forward": forward, "backward": backward}
            for (key, _), (verdict, forward, backward) in zip(missing, judge_pairs(choose, asked) if asked else [])
        }
        cached.update(fresh)
        rows = []
        for model, item in pairs:
            key = keys[(model.label, item.item_id)]
            entry, output = cached[key], answer(model, item)
            cut = outputs[(model.label, item.item_id)].get("finish_reason") == "length"
            flipped = float(position_flipped(entry["forward"], entry["backward"]))
            for metric, value in ((METRICS[JUDGE], entry["verdict"]), (FLIP_METRIC, flipped)):
                rows.append(_row(model, item, metric, value, output, self.settings, cut, self.judge_name))
        self.stats["judged"] += len(fresh)
        self.stats["judged_cached"] += len(pairs) - len(fresh)
        self.cache.put("judge", fresh)
        return rows

    # -- held-out likelihood ------------------------------------------------------------------------------

    def score_nll(self, models: Sequence[ModelUnderTest], items: Sequence[EvalItem]) -> list[dict]:
        answers = {i.item_id: tuple(self.tokenizer(i.reference, add_special_tokens=False)["input_ids"]) for i in items}
        wanted = [(m, i) for m in models for i in items]
        keys = [
            output_key("nll", [*self.identity, m.key, list(self.prompt(i)), list(answers[i.item_id])])
            for m, i in wanted
        ]
        cached = self.cache.get(keys)
        missing = [k for k, key in enumerate(keys) if key not in cached]
        if missing:
            requests = [
                NllRequest(self.prompt(wanted[k][1]), answers[wanted[k][1].item_id], wanted[k][0].adapter)
                for k in missing
            ]
            fresh = {keys[k]: {"nll": v} for k, v in zip(missing, self.backend.answer_nll(requests))}
            self.cache.put("nll", fresh)
            cached.update(fresh)
        self.stats["nll_scored"] += len(missing)
        self.stats["nll_cached"] += len(wanted) - len(missing)
        return [
            _row(m, i, METRICS[HELDOUT_NLL], cached[key]["nll"], "", self.settings) for (m, i), key in zip(wanted, keys)
        ]

    # -- lm-evaluation-harness ----------------------------------------------------------------------------

    def score_harness(self, models: Sequence[ModelUnderTest], items: Sequence[EvalItem]) -> list[dict]:
        """The arithmetic suite through lm-eval's own task machinery, each model's run cached whole."""
        from reflection_assets.evaluation.harness import ARITHMETIC_TASK, TASK_DIR, write_arithmetic_task

        task_text = (TASK_DIR / f"{ARITHMETIC_TASK}.yaml").read_text()
        tokens = self.settings.tokens_for(ARITHMETIC)  # lm-eval answers as long as the suite's own
        keys = {
            m.label: output_key(
                "lm_eval",
                [*self.identity, m.key, task_text, [asdict(i) for i in items], self.settings.system, tokens],
            )
            for m in models
        }
        cached = self.cache.get(list(keys.values()))
        missing = [m for m in models if keys[m.label] not in cached]
        self.stats["lm_eval_cached"] += len(models) - len(missing)
        self.stats["lm_eval_runs"] += len(missing)
        if missing:
            with tempfile.TemporaryDirectory() as folder:
                write_arithmetic_task(items, Path(folder), tokens)
                results = self.backend.harness(
                    [m.adapter for m in missing],
                    [ARITHMETIC_TASK],
                    Path(folder),
                    self.settings.system or None,
                    generate=self.harness_generate(missing),
                )
            fresh = {keys[m.label]: {"samples": [asdict(s) for s in results[m.adapter]]} for m in missing}
            self.cache.put("lm_eval", fresh)
            cached.update(fresh)
        rows = []
        for model in models:
            for sample in cached[keys[model.label]]["samples"]:
                item = items[sample["doc_index"]]
                lm_item = EvalItem(LM_EVAL_ARITHMETIC, item.instruction, item.input, item.reference)
                rows.append(
                    _row(model, lm_item, METRICS[LM_EVAL_ARITHMETIC], sample["score"], sample["output"], self.settings)
                )
        return rows


def evaluate(
    evaluator: Evaluator,
    models: Sequence[ModelUnderTest],
    items: dict[str, list[EvalItem]],
    choose: ChooseMany | None = None,
    judge_identity: Any = None,
) -> pd.DataFrame:
    """Every suite for every model: the eval_scores rows."""
    rows = evaluator.score_nll(models, items.get(HELDOUT_NLL, []))
    rows += evaluator.score_generated(models, items, choose, judge_identity)
    if evaluator.settings.lm_eval and items.get(ARITHMETIC):
        rows += evaluator.score_harness(models, items[ARITHMETIC])
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)
