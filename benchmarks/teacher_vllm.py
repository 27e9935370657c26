"""The in-process teacher against a vLLM server, side by side on the same rows: time and parse share.

Both teachers run the real runner (prompts, guided plan, parser) over the first N demo rows, for each
stage and each mode (guided, unguided), each on a fresh call cache so every row is generated. The
server is any vLLM (`scripts/vllm_cpu.sh serve` on this machine); the in-process teacher loads the
same bundled model in this process. Compare like with like: serve and load in the same dtype.

    python benchmarks/teacher_vllm.py --url http://127.0.0.1:8000/v1 [--rows 20] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("REFLECTION_TEST_VLLM_URL"), help="vLLM /v1 URL")
    parser.add_argument("--served-model", default=None, help="served model name (default: the server's first)")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--stages", default="instruction,response")
    parser.add_argument("--modes", default="guided,unguided")
    parser.add_argument("--teachers", default="vllm,local", help="comma-separated: vllm, local")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--critique-tokens", type=int, default=32)
    parser.add_argument("--dtype", default="bfloat16", help="in-process teacher's dtype")
    parser.add_argument("--batch-size", type=int, default=8, help="in-process teacher's batch")
    parser.add_argument("--concurrency", type=int, default=8, help="HTTP requests in flight")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads of the in-process teacher")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import httpx

    from reflection_assets.demo_data import DEMO_TRAIN_PATH
    from reflection_assets.ingest.readers import read_dataset
    from reflection_assets.teacher.cache import CallCache
    from reflection_assets.teacher.runner import reflect_rows
    from reflection_assets.teacher.settings import ReflectionSettings
    from resources.teacher_http import OpenAICompatibleTeacher
    from resources.teacher_local import TransformersTeacher

    pairs = read_dataset(DEMO_TRAIN_PATH).accepted[: args.rows]
    teachers: dict[str, object] = {}
    for name in args.teachers.split(","):
        if name == "vllm":
            if not args.url:
                parser.error("--url (or REFLECTION_TEST_VLLM_URL) is needed for the vllm teacher")
            model = args.served_model or httpx.get(args.url.rstrip("/") + "/models", timeout=10).json()["data"][0]["id"]
            teachers[name] = OpenAICompatibleTeacher(base_url=args.url, model=model, max_concurrency=args.concurrency,
                                                     timeout_s=600)
        elif name == "local":
            teacher = TransformersTeacher(model_ref="bundled", dtype=args.dtype, batch_size=args.batch_size,
                                          num_threads=args.threads)
            teacher.load()  # not timed
            teachers[name] = teacher
        else:
            parser.error(f"unknown teacher {name!r}")

    report: dict = {"rows": len(pairs), "max_new_tokens": args.max_new_tokens, "critique_tokens": args.critique_tokens,
                    "dtype": args.dtype, "load_before": os.getloadavg(), "cpus": os.cpu_count(), "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages.split(","):
            for mode in args.modes.split(","):
                for name, teacher in teachers.items():
                    cache = CallCache(Path(tmp) / f"{name}-{stage}-{mode}.duckdb")  # fresh: every row is generated
                    settings = ReflectionSettings(max_new_tokens=args.max_new_tokens,
                                                  critique_tokens=args.critique_tokens, guided=mode == "guided")
                    start = time.perf_counter()
                    frame, stats = reflect_rows(pairs, stage, teacher, cache, settings)  # type: ignore[arg-type]
                    seconds = time.perf_counter() - start
                    answered = frame["outcome"].isin(["reflected", "parse_failed"])
                    reasons = Counter(frame.loc[frame["outcome"] == "parse_failed", "error"])
                    row = {"teacher": name, "stage": stage, "mode": mode, "seconds": round(seconds, 2),
                           "rows_per_s": round(len(pairs) / seconds, 3),
                           "parsed": int((frame["outcome"] == "reflected").sum()), "answered": int(answered.sum()),
                           "errors": stats.calls_failed, "requests": stats.requests,
                           "completion_tokens": stats.completion_tokens, "failures": dict(reasons.most_common(3)),
                           "load": os.getloadavg()[0]}
                    report["results"].append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    report["load_after"] = os.getloadavg()
    print(table(report["results"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def table(rows: list[dict]) -> str:
    lines = ["| stage | mode | teacher | parsed | time | rows/s | generated tokens | top parse failures |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        failures = ", ".join(f"{n} {k}" for k, n in r["failures"].items()) or "-"
        lines.append(f"| {r['stage']} | {r['mode']} | {r['teacher']} | {r['parsed']}/{r['answered']} "
                     f"| {r['seconds']:.1f} s | {r['rows_per_s']:.2f} | {r['completion_tokens']:,} | {failures} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
