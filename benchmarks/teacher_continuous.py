"""Continuous batching vs batches one after another: the demo's two teacher stages, in process, side by side.

The same loaded teacher (the bundled SmolLM2 by default), the demo's settings (guided, 192-token
sections, 128-token critique) and the first N demo rows, through the engine's two paths:
- `batches`: planned batches run one after another, each until its longest row is done (the
  earlier engine path, `TransformersTeacher(continuous=False)`);
- `running`: one running batch per stage; a row that finishes leaves and waiting rows join.
Alternating order per stage. Reports seconds, forwards, the engine's counters and how many texts
differ between the paths (greedy: they must not).

    OMP_NUM_THREADS=2 python benchmarks/teacher_continuous.py [--rows 24] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

STAGES = ("instruction", "response")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=24, help="first N demo rows (the demo has 68)")
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--section-tokens", type=int, default=192, help="the demo's max_new_tokens")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the engine's)")
    parser.add_argument("--dtype", default=None, help="the teacher's dtype (default: the project's choice)")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated: instruction,response")
    args = parser.parse_args(argv)

    from reflection_assets.demo_data import DEMO_TRAIN_PATH
    from reflection_assets.ingest.readers import read_dataset
    from reflection_assets.model_store import load_model_and_tokenizer
    from reflection_assets.teacher.planning import build_request
    from reflection_assets.teacher.settings import ReflectionSettings
    from resources.teacher_local import TransformersTeacher

    model, tokenizer, fingerprint = load_model_and_tokenizer(args.model, dtype=args.dtype, generation=True)
    settings = ReflectionSettings(max_new_tokens=args.section_tokens, guided=True)
    pairs = read_dataset(DEMO_TRAIN_PATH).accepted[: args.rows]
    teachers = {
        path: TransformersTeacher.from_loaded(
            model, tokenizer, name=fingerprint, num_threads=args.threads, continuous=path == "running"
        )
        for path in ("batches", "running")
    }
    warm = [build_request("instruction", p, settings, guided=True) for p in pairs[:2]]
    for teacher in teachers.values():  # first allocations and stop-string tables are not part of either path
        teacher.complete(warm)
    report: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {subprocess.getoutput('nproc')} cores",
        "model": fingerprint,
        "dtype": str(model.dtype),
        "rows": len(pairs),
        "load_before": subprocess.getoutput("cat /proc/loadavg"),
        "stages": {},
    }
    stages = [s for s in args.stages.split(",") if s in STAGES]
    for k, stage in enumerate(stages):
        requests = [build_request(stage, p, settings, guided=True) for p in pairs]
        order = ["batches", "running"] if k % 2 == 0 else ["running", "batches"]
        runs: dict[str, dict] = {}
        texts: dict[str, list[str]] = {}
        for path in order:
            engine = teachers[path].engine()
            before = dict(vars(engine.stats))
            start = time.perf_counter()
            results = teachers[path].complete(requests)
            seconds = time.perf_counter() - start
            texts[path] = [r.text for r in results]
            stats = {key: value - before[key] for key, value in vars(engine.stats).items()}
            runs[path] = {"seconds": round(seconds, 1), "errors": sum(not r.ok for r in results), **stats}
            print(f"{stage}: {path} {seconds:.1f}s", file=sys.stderr, flush=True)
        differ = sum(a != b for a, b in zip(texts["batches"], texts["running"]))
        report["stages"][stage] = {
            "order": order,
            **runs,
            "speed_up": round(runs["batches"]["seconds"] / runs["running"]["seconds"], 2),
            "texts_that_differ": differ,
        }
    total = {path: sum(report["stages"][stage][path]["seconds"] for stage in stages) for path in ("batches", "running")}
    report["stages_speed_up"] = round(total["batches"] / total["running"], 2)
    report["load_after"] = subprocess.getoutput("cat /proc/loadavg")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
