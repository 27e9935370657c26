"""How often the bundled 135M teacher's reflections parse, with and without guided generation.

Runs the real runner (prompts, teacher, parser) over the demo training set in one process, the
same rows and token caps for both modes, and reports the share of rows reflected and the parse
failure reasons.

    python benchmarks/teacher_guided_parse.py [--rows 68] [--max-new-tokens 96] [--critique-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="first N demo rows (default: all)")
    parser.add_argument("--stages", default="instruction", help="comma-separated: instruction,response")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--critique-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from reflection_assets.demo_data import DEMO_TRAIN_PATH
    from reflection_assets.ingest.readers import read_dataset
    from reflection_assets.model_store import load_model_and_tokenizer
    from reflection_assets.teacher.cache import CallCache
    from reflection_assets.teacher.runner import reflect_rows
    from reflection_assets.teacher.settings import ReflectionSettings
    from resources.teacher_local import TransformersTeacher

    pairs = read_dataset(DEMO_TRAIN_PATH).accepted[: args.rows]
    model, tokenizer, fingerprint = load_model_and_tokenizer(args.model)
    teacher = TransformersTeacher.from_loaded(model, tokenizer, name=fingerprint, batch_size=args.batch_size)
    report: dict = {"model": fingerprint, "rows": len(pairs), "max_new_tokens": args.max_new_tokens,
                    "critique_tokens": args.critique_tokens, "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        cache = CallCache(Path(tmp) / "llm_calls.duckdb")  # fresh: every row is generated
        for stage in args.stages.split(","):
            for guided in (False, True):
                settings = ReflectionSettings(
                    max_new_tokens=args.max_new_tokens, critique_tokens=args.critique_tokens, guided=guided
                )
                start = time.perf_counter()
                frame, stats = reflect_rows(
                    pairs, stage, teacher, cache, settings, log=lambda m: print(m, file=sys.stderr)
                )
                reasons = Counter(frame.loc[frame["outcome"] == "parse_failed", "error"])
                row = {
                    "stage": stage,
                    "guided": guided,
                    "parsed_share": round(float((frame["outcome"] == "reflected").mean()), 3),
                    "outcomes": stats.outcomes,
                    "parse_failures": dict(reasons.most_common()),
                    "requests": stats.requests,
                    "completion_tokens": stats.completion_tokens,
                    "seconds": round(time.perf_counter() - start, 1),
                    "example": frame.loc[frame["outcome"] == "reflected", "raw_text"].head(1).tolist(),
                }
                report["results"].append(row)
                print(json.dumps(row, ensure_ascii=False), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
