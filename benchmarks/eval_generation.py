"""Evaluation cost, measured side by side in one run (same machine, same load): the demo's generated suites
(arithmetic, IFEval-style, GSM8K, judge instructions; ~15 items each, 64 new tokens) for the
base and two LoRA adapters on the bundled model.

1. One shared mixed-adapter pass (PEFT adapter_names per row) vs one pass per model (the same
   requests, one adapter at a time), and the share of identical greedy outputs between the two.
2. The whole `evaluate` (held-out NLL, the shared pass, the judge, lm-eval) cold, then again on a
   warm output cache (what a re-run of the report costs).
3. Saving: `Evaluator.generate` storing each batch's outputs as the batch finishes (the product: a
   killed pass keeps its finished batches) vs holding every output until the pass ends (the earlier
   behaviour), alternately, on fresh caches, at the default batch budget and a small one.

The adapters are random LoRA (r=8, all linear layers, small non-zero B): the point is the cost of
serving several adapters from one model, not their quality.

    python benchmarks/eval_generation.py [--items 15] [--new-tokens 64] [--threads 2] [--part pass|full|save|all]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

ADAPTERS = ("selective", "random")


def peft_model(model_ref: str):
    import torch
    from peft import LoraConfig, get_peft_model

    from reflection_assets.model_store import load_model_and_tokenizer

    model, tokenizer, fingerprint = load_model_and_tokenizer(model_ref)
    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    torch.manual_seed(0)
    model = get_peft_model(model, config, adapter_name=ADAPTERS[0])
    for name in ADAPTERS[1:]:
        model.add_adapter(name, config)
    with torch.no_grad():  # keep the random adapters small so the model still writes text
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.mul_(0.05)
    return model.eval(), tokenizer, fingerprint


def settings(items: int, new_tokens: int):
    from reflection_assets.demo_data import DEMO_EVAL_PATH
    from reflection_assets.evaluation.runner import EvalSettings

    path = str(DEMO_EVAL_PATH)
    return EvalSettings(eval_file=path, gsm8k_file=path, items_per_suite=items, max_new_tokens=new_tokens)


def bench_pass(model, tokenizer, items: int, new_tokens: int) -> dict:
    from reflection_assets.evaluation.runner import build_items
    from reflection_assets.evaluation.suites import GENERATED_SUITES
    from reflection_assets.generation.engine import GenerationEngine, GenerationRequest
    from reflection_assets.scoring.templates import prompt_ids

    chosen = build_items(settings(items, new_tokens))
    prompts = [
        tuple(prompt_ids(tokenizer, "chat", i.instruction, i.input)) for s in GENERATED_SUITES for i in chosen[s]
    ]
    models = [None, *ADAPTERS]
    requests = [GenerationRequest(p, new_tokens, adapter) for adapter in models for p in prompts]
    engine = GenerationEngine(model, tokenizer)

    start = time.perf_counter()
    mixed = engine.generate(requests)
    mixed_s = time.perf_counter() - start
    start = time.perf_counter()
    separate = []
    for adapter in models:
        separate += engine.generate([r for r in requests if r.adapter == adapter])
    separate_s = time.perf_counter() - start
    tokens = sum(o.new_tokens for o in mixed)
    return {
        "prompts_per_model": len(prompts),
        "models": len(models),
        "requests": len(requests),
        "new_tokens": tokens,
        "mixed_s": round(mixed_s, 1),
        "per_model_s": round(separate_s, 1),
        "mixed_tok_per_s": round(tokens / mixed_s, 1),
        "per_model_tok_per_s": round(sum(o.new_tokens for o in separate) / separate_s, 1),
        "per_model_over_mixed": round(separate_s / mixed_s, 2),
        "identical_outputs": f"{sum(a.token_ids == b.token_ids for a, b in zip(mixed, separate))}/{len(mixed)}",
    }


def bench_full(model, tokenizer, fingerprint: str, items: int, new_tokens: int) -> dict:
    from reflection_assets.evaluation.cache import EvalOutputCache
    from reflection_assets.evaluation.runner import BASE, Evaluator, ModelUnderTest, build_items, evaluate
    from resources.teacher_local import TransformersTeacher

    models = [ModelUnderTest(BASE, None, ""), *(ModelUnderTest(a, a, f"bench-{a}") for a in ADAPTERS)]
    teacher = TransformersTeacher(model_ref="bundled")
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        cache = EvalOutputCache(Path(folder) / "warehouse.duckdb")
        chosen = build_items(settings(items, new_tokens))
        for run in ("cold", "warm"):
            evaluator = Evaluator(model, tokenizer, fingerprint, settings(items, new_tokens), cache, log=lambda _: None)
            start = time.perf_counter()
            scores = evaluate(
                evaluator, models, chosen, choose=teacher.choose_many, judge_identity=teacher.cache_identity()
            )
            out[f"{run}_s"] = round(time.perf_counter() - start, 1)
            out[f"{run}_stats"] = {k: round(v, 1) if isinstance(v, float) else v for k, v in evaluator.stats.items()}
        out["rows"] = len(scores)
    return out


def bench_save(model, tokenizer, fingerprint: str, items: int, new_tokens: int, budgets: list[int]) -> list[dict]:
    from dataclasses import replace

    from reflection_assets.evaluation.cache import EvalOutputCache
    from reflection_assets.evaluation.runner import BASE, Evaluator, ModelUnderTest, build_items
    from reflection_assets.evaluation.suites import GENERATED_SUITES

    class CountedCache(EvalOutputCache):
        puts = 0

        def put(self, kind, payloads):  # noqa: ANN001
            self.puts += 1
            super().put(kind, payloads)

    class PutAtEnd(CountedCache):
        """The reference: outputs wait in memory until the pass ends (a kill loses them all)."""

        held: dict = {}

        def put(self, kind, payloads):  # noqa: ANN001
            self.held = {**self.held, **payloads}

        def flush(self) -> None:
            CountedCache.put(self, "generation", self.held)

    models = [ModelUnderTest(BASE, None, ""), *(ModelUnderTest(a, a, f"bench-{a}") for a in ADAPTERS)]
    chosen = build_items(settings(items, new_tokens))
    wanted = [i for suite in GENERATED_SUITES for i in chosen[suite]]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for run, budget in enumerate(budgets):
            for mode, cache_type in (("per batch", CountedCache), ("at the end", PutAtEnd)):
                cache = cache_type(Path(folder) / f"{run}-{mode.replace(' ', '-')}.duckdb")  # cold every time
                evaluator = Evaluator(model, tokenizer, fingerprint,
                                      replace(settings(items, new_tokens), batch_tokens=budget or None),
                                      cache, log=lambda _: None)
                start = time.perf_counter()
                texts = evaluator.generate(models, wanted)
                if isinstance(cache, PutAtEnd):
                    cache.flush()
                wall = time.perf_counter() - start
                assert cache.count("generation") == len(texts) == len(models) * len(wanted)
                rows.append({"batch_tokens": budget or "default", "mode": mode, "requests": len(texts),
                             "puts": cache.puts, "wall_s": round(wall, 2), "texts": texts})
            per_batch, at_end = rows[-2], rows[-1]
            per_batch["identical_texts"] = per_batch.pop("texts") == at_end.pop("texts")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=15)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--part", choices=("pass", "full", "save", "all"), default="all")
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--budgets", default="0,1024", help="save: batch token budgets (0: the engine's default)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    model, tokenizer, fingerprint = peft_model(args.model)
    report = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch threads {args.threads}",
        "model": args.model,
        "dtype": str(model.dtype),
    }
    print(json.dumps(report), flush=True)  # each part as it finishes: a long run still leaves figures
    if args.part in ("pass", "all"):
        print(json.dumps({"shared_pass": bench_pass(model, tokenizer, args.items, args.new_tokens)}), flush=True)
    if args.part in ("full", "all"):
        print(
            json.dumps({"evaluate": bench_full(model, tokenizer, fingerprint, args.items, args.new_tokens)}), flush=True
        )
    if args.part in ("save", "all"):
        budgets = [int(b) for b in args.budgets.split(",")]
        for row in bench_save(model, tokenizer, fingerprint, args.items, args.new_tokens, budgets):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
