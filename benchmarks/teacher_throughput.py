"""Teacher throughput, measured side by side in one run (same machine, same load).

1. In-process: the same reflection prompts generated in left-padded batches vs one at a time,
   every prompt forced to the same number of new tokens (min_new_tokens = max_new_tokens), and
   the share of greedy outputs that agree between the two paths.
2. HTTP: the OpenAI-compatible backend against a loopback server with a fixed latency per call,
   at concurrency 1, 4 and 16; ideal time = calls x latency / concurrency.
3. Guided (issue 10): the instruction stage, guided, on the first N demo rows, through the earlier
   path (`generation="generate"`: one model.generate per batch of 8 and per guided step) and through
   the generation engine, on one loaded model, alternately: rows/s, generated tok/s, positions the
   model computed (prompt positions separately) and whether the texts are identical.
4. Persist: the instruction stage (`reflect_rows`) over HTTP at concurrency 16, saving each call
   to `llm_calls` as it finishes (the product: a SIGKILL loses only the calls in flight) vs the
   earlier behaviour, every record held in memory and written once at the end, alternately.

    python benchmarks/teacher_throughput.py [--part local|http|guided|persist|all] [--prompts 16] [--new-tokens 64]
    python benchmarks/teacher_throughput.py --part guided --rows 32,68 --section-tokens 96 \
        --critique-tokens 32 --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The loopback server lives with the test helpers; the repo goes first so that `reflection_assets` is the
# package, not the namespace that tests/reflection_assets would make of it.
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def demo_pairs(n: int) -> list:
    from reflection_assets.demo_data import DEMO_TRAIN_PATH
    from reflection_assets.ingest.readers import read_dataset

    return read_dataset(DEMO_TRAIN_PATH).accepted[:n]


def bench_local(prompts: int, new_tokens: int, batch_size: int, model_ref: str) -> dict:
    """Batched vs one-at-a-time generation of the same prompts, equal work per prompt."""
    from reflection_assets.model_store import load_model_and_tokenizer
    from reflection_assets.teacher.planning import build_request
    from reflection_assets.teacher.settings import ReflectionSettings
    from reflection_assets.teacher.types import ChatRequest, Sampling
    from resources.teacher_local import TransformersTeacher

    model, tokenizer, fingerprint = load_model_and_tokenizer(model_ref)
    teacher = TransformersTeacher.from_loaded(model, tokenizer, name=fingerprint, batch_size=batch_size)
    sampling = Sampling(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    requests = [
        ChatRequest(build_request("instruction", p, ReflectionSettings(), guided=False).messages, sampling)
        for p in demo_pairs(prompts)
    ]
    teacher.complete(requests[:1])  # warm-up: first-call allocations are not part of either path

    start = time.perf_counter()
    batched = teacher.complete(requests)
    batched_s = time.perf_counter() - start
    print(f"batched: {batched_s:.1f}s", file=sys.stderr, flush=True)
    start = time.perf_counter()
    single = [teacher.complete([r])[0] for r in requests]
    single_s = time.perf_counter() - start
    print(f"one at a time: {single_s:.1f}s", file=sys.stderr, flush=True)

    generated = sum(r.completion_tokens for r in batched)
    assert generated == sum(r.completion_tokens for r in single) == prompts * new_tokens, "unequal work"
    agree = sum(b.text == s.text for b, s in zip(batched, single))
    return {
        "model": fingerprint,
        "prompts": prompts,
        "batch_size": batch_size,
        "new_tokens_per_prompt": new_tokens,
        "mean_prompt_tokens": round(sum(r.prompt_tokens for r in batched) / prompts, 1),
        "batched_s": round(batched_s, 2),
        "one_at_a_time_s": round(single_s, 2),
        "batched_tokens_per_s": round(generated / batched_s, 1),
        "one_at_a_time_tokens_per_s": round(generated / single_s, 1),
        "speedup": round(single_s / batched_s, 2),
        "greedy_agreement": round(agree / prompts, 3),
    }


class ForwardCounter:
    """Positions the model computes (padding included), from a hook on its forward: the same count for both paths."""

    def __init__(self, model) -> None:  # type: ignore[no-untyped-def]
        self.positions = self.prompt_positions = self.calls = 0
        self.handle = model.register_forward_pre_hook(self.count, with_kwargs=True)

    def count(self, module, args, kwargs):  # type: ignore[no-untyped-def]
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            rows, width = ids.shape
            self.calls += 1
            self.positions += rows * width
            if width > 1:  # a prompt pass (generate's first call; the engine's prefill, prefix and long feeds)
                self.prompt_positions += rows * width

    def take(self) -> dict:
        figures = {
            "forward_calls": self.calls,
            "positions_computed": self.positions,
            "prompt_positions_computed": self.prompt_positions,
        }
        self.positions = self.prompt_positions = self.calls = 0
        return figures


def bench_guided(
    row_counts: list[int],
    section_tokens: int,
    critique_tokens: int,
    model_ref: str,
    batch_tokens: int | None,
    threads: int | None,
) -> list[dict]:
    """Earlier path vs the engine on the guided instruction stage; one model, alternating order per size."""
    from reflection_assets.model_store import load_model_and_tokenizer
    from reflection_assets.teacher.planning import build_request
    from reflection_assets.teacher.settings import ReflectionSettings
    from resources.teacher_local import TransformersTeacher

    model, tokenizer, fingerprint = load_model_and_tokenizer(model_ref)
    settings = ReflectionSettings(max_new_tokens=section_tokens, critique_tokens=critique_tokens, guided=True)
    teachers = {
        "generate": TransformersTeacher.from_loaded(
            model, tokenizer, name=fingerprint, batch_size=8, generation="generate"
        ),
        "engine": TransformersTeacher.from_loaded(
            model, tokenizer, name=fingerprint, generation="engine", batch_tokens=batch_tokens, num_threads=threads
        ),  # else the engine takes every core
    }
    counter = ForwardCounter(model)
    warm = [build_request("instruction", p, settings, guided=True) for p in demo_pairs(2)]
    for teacher in teachers.values():  # warm-up: stop-string tables, first allocations
        teacher.complete(warm)
    counter.take()
    rows = []
    for k, n in enumerate(row_counts):
        requests = [build_request("instruction", p, settings, guided=True) for p in demo_pairs(n)]
        order = ["generate", "engine"] if k % 2 == 0 else ["engine", "generate"]
        runs: dict[str, dict] = {}
        for path in order:
            engine = teachers["engine"].engine()
            before = dict(vars(engine.stats))
            start = time.perf_counter()
            results = teachers[path].complete(requests)
            seconds = time.perf_counter() - start
            generated = sum(r.completion_tokens for r in results)
            runs[path] = {
                "seconds": round(seconds, 2),
                "rows_per_s": round(n / seconds, 3),
                "generated_tokens": generated,
                "generated_tok_per_s": round(generated / seconds, 1),
                **counter.take(),
                "texts": [r.text for r in results],
                "errors": sum(not r.ok for r in results),
            }
            if path == "engine":
                runs[path]["engine_stats"] = {key: value - before[key] for key, value in vars(engine.stats).items()}
            print(f"{n} rows, {path}: {seconds:.1f}s", file=sys.stderr, flush=True)
        old, new = runs["generate"], runs["engine"]
        differ = [i for i, (a, b) in enumerate(zip(old.pop("texts"), new.pop("texts"))) if a != b]
        rows.append(
            {
                "rows": n,
                "order": order,
                "generate": old,
                "engine": new,
                "speedup": round(old["seconds"] / new["seconds"], 2),
                "prompt_positions_ratio": round(
                    old["prompt_positions_computed"] / max(1, new["prompt_positions_computed"]), 2
                ),
                "identical_texts": n - len(differ),
                "differing_rows": differ,
            }
        )
        print(json.dumps(rows[-1]), flush=True)  # each size as soon as it is measured
    counter.handle.remove()
    return rows


def bench_http(calls: int, latency_s: float, concurrencies: tuple[int, ...]) -> list[dict]:
    """Wall time of `calls` requests against a server that takes `latency_s` per call."""
    from reflection_assets.teacher.types import ChatRequest, Sampling
    from resources.teacher_http import OpenAICompatibleTeacher
    from support.fault_server import FaultServer

    rows = []
    with FaultServer(latency_s=latency_s) as server:
        requests = [
            ChatRequest.of([{"role": "user", "content": f"ROW=b{i} Reflect."}], Sampling(max_new_tokens=8))
            for i in range(calls)
        ]
        for concurrency in concurrencies:
            teacher = OpenAICompatibleTeacher(
                base_url=server.url, model="bench", max_concurrency=concurrency, timeout_s=30
            )
            teacher.complete(requests[:concurrency])  # warm-up: connection set-up
            start = time.perf_counter()
            results = teacher.complete(requests)
            wall = time.perf_counter() - start
            assert all(r.ok for r in results)
            ideal = calls * latency_s / concurrency
            rows.append(
                {
                    "concurrency": concurrency,
                    "calls": calls,
                    "latency_s": latency_s,
                    "wall_s": round(wall, 3),
                    "ideal_s": round(ideal, 3),
                    "ratio_to_ideal": round(wall / ideal, 3),
                }
            )
    return rows


def bench_persist(calls: int, latency_s: float, concurrency: int, repeats: int) -> list[dict]:
    """Per-call saves vs one write at the end, for the same stage, alternately, on fresh cache files."""
    import tempfile

    from reflection_assets.schema import Pair
    from reflection_assets.teacher.cache import CallCache
    from reflection_assets.teacher.runner import reflect_rows
    from resources.teacher_http import OpenAICompatibleTeacher
    from support.fault_server import FaultServer

    class CountedCache(CallCache):
        """The product's cache, counting its DuckDB write batches."""

        writes = 0

        def write(self, records):  # noqa: ANN001
            self.writes += 1
            super().write(records)

    class WriteAtEnd(CountedCache):
        """The reference: records wait in memory until the stage ends (a SIGKILL loses them all)."""

        held: list = []

        def write(self, records):  # noqa: ANN001
            self.held = [*self.held, *records]

        def flush(self) -> None:
            CountedCache.write(self, self.held)

    pairs = [Pair(f"ROW=p{i} Explain why the sky is blue.", f"Because of scattering ({i}).") for i in range(calls)]
    rows = []
    with FaultServer(latency_s=latency_s) as server, tempfile.TemporaryDirectory() as folder:
        teacher = OpenAICompatibleTeacher(base_url=server.url, model="bench", max_concurrency=concurrency)
        reflect_rows(pairs[:concurrency], "instruction", teacher, CountedCache(Path(folder) / "warm.duckdb"))
        for repeat in range(repeats):
            for mode, cache_type in (("per call", CountedCache), ("at the end", WriteAtEnd)):
                cache = cache_type(Path(folder) / f"{mode.replace(' ', '-')}-{repeat}.duckdb")
                start = time.perf_counter()
                frame, stats = reflect_rows(pairs, "instruction", teacher, cache)
                if isinstance(cache, WriteAtEnd):
                    cache.flush()
                wall = time.perf_counter() - start
                assert stats.calls_made == calls and cache.count("ok") == calls
                rows.append({"mode": mode, "repeat": repeat + 1, "calls": calls, "concurrency": concurrency,
                             "latency_s": latency_s, "wall_s": round(wall, 3), "duckdb_writes": cache.writes,
                             "ideal_s": round(calls * latency_s / concurrency, 3)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("local", "http", "guided", "persist", "all"), default="all")
    parser.add_argument("--rows", default="32,68", help="guided: demo row counts, comma-separated")
    parser.add_argument("--section-tokens", type=int, default=96, help="guided: tokens per marked section")
    parser.add_argument("--critique-tokens", type=int, default=32, help="guided: tokens of the critique")
    parser.add_argument(
        "--batch-tokens", type=int, default=None, help="guided: engine batch budget (default by device)"
    )
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--calls", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (1 avoids OpenMP oversubscription on a shared machine)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="persist: alternating repeats of each mode")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    report: dict = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if args.part in ("local", "all"):
        report["local"] = bench_local(args.prompts, args.new_tokens, args.batch_size, args.model)
        print(json.dumps(report["local"], indent=2), flush=True)
    if args.part in ("guided", "all"):
        report["guided"] = bench_guided(
            [int(n) for n in args.rows.split(",")],
            args.section_tokens,
            args.critique_tokens,
            args.model,
            args.batch_tokens,
            args.threads,
        )
    if args.part in ("http", "all"):
        report["http"] = bench_http(args.calls, args.latency, (1, 4, 16))
        for row in report["http"]:
            print(json.dumps(row), flush=True)
    if args.part in ("persist", "all"):
        report["persist"] = bench_persist(args.calls, args.latency, 16, args.repeats)
        for row in report["persist"]:
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
