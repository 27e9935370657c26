"""The pairwise judge's questions one at a time (`choose`) vs all at once (`choose_many`), side by side.

The bundled teacher judges N pairs from the demo's held-out file (each pair's reference answer against
a shortened copy of it), both orders, so 2N questions with the options "1" and "2". `choose` runs a
forward per option per question (the earlier path); `choose_many` runs every question in left-padded
token-budget batches, one row per question (single-token options). Reports seconds, the ratio and the
largest difference between the two paths' probabilities.

    OMP_NUM_THREADS=1 python benchmarks/judge_batch.py [--pairs 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from reflection_assets.demo_data import DEMO_EVAL_PATH
    from reflection_assets.evaluation.judge import OPTIONS, judge_messages
    from reflection_assets.ingest.readers import read_dataset
    from reflection_assets.model_store import load_model_and_tokenizer
    from resources.teacher_local import TransformersTeacher

    torch.set_num_threads(args.threads)
    model, tokenizer, fingerprint = load_model_and_tokenizer("bundled", generation=True)
    teacher = TransformersTeacher.from_loaded(model, tokenizer, name=fingerprint, num_threads=args.threads)
    pairs = read_dataset(DEMO_EVAL_PATH).accepted[: args.pairs]
    asks = []
    for pair in pairs:
        short = pair.output[: max(1, len(pair.output) // 2)]
        asks.append((judge_messages(pair.instruction, pair.output, short), OPTIONS))
        asks.append((judge_messages(pair.instruction, short, pair.output), OPTIONS))
    teacher.choose_many(asks[:2])  # first allocations belong to neither path
    teacher.choose(*asks[0])
    load_before = subprocess.getoutput("cat /proc/loadavg")
    start = time.perf_counter()
    alone = [teacher.choose(messages, options) for messages, options in asks]
    one_by_one_s = time.perf_counter() - start
    start = time.perf_counter()
    together = teacher.choose_many(asks)
    batched_s = time.perf_counter() - start
    worst = max(abs(a - b) for x, y in zip(alone, together) for a, b in zip(x, y))
    print(
        json.dumps(
            {
                "model": fingerprint,
                "dtype": str(model.dtype),
                "questions": len(asks),
                "one_at_a_time_s": round(one_by_one_s, 2),
                "choose_many_s": round(batched_s, 2),
                "speed_up": round(one_by_one_s / batched_s, 2),
                "largest_probability_difference": worst,
                "same_preferences": sum((a[0] > a[1]) == (b[0] > b[1]) for a, b in zip(alone, together)),
                "load_before": load_before,
                "load_after": subprocess.getoutput("cat /proc/loadavg"),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
