"""IFD / r-IFD in process against a vLLM server, side by side on the same pairs: pairs/s and agreement.

Both paths run the product's scorer (`score_pairs`, no cache) on the first N demo pairs: once with
the bundled student loaded here (fp32 by default), once with `ServedLossEngine` against the server
(`scripts/vllm_cpu.sh serve` on this machine, in whatever dtype it was started with), at each
requested prompt-log-probability concurrency. Reports seconds, pairs/s, the ratio, and the largest
relative IFD / r-IFD difference and status mismatches against the in-process run.

    python benchmarks/student_vllm.py --url http://127.0.0.1:8000/v1 [--pairs 68] [--concurrency 1,8]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def largest_difference(reference: list, other: list) -> dict:
    worst = {"ifd": 0.0, "rifd": 0.0}
    mismatched = 0
    for a, b in zip(reference, other):
        mismatched += (a.ifd_status != b.ifd_status) + (a.rifd_status != b.rifd_status)
        for name, x, y in (("ifd", a.ifd_ppl, b.ifd_ppl), ("rifd", a.rifd_ppl, b.rifd_ppl)):
            if x is not None and y is not None and x:
                worst[name] = max(worst[name], abs(x - y) / abs(x))
    return {
        "largest_rel_diff_ifd": worst["ifd"],
        "largest_rel_diff_rifd": worst["rifd"],
        "status_mismatches": mismatched,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("REFLECTION_TEST_VLLM_URL"), help="vLLM /v1 URL")
    parser.add_argument("--served-model", default=None, help="served model name (default: the server's first)")
    parser.add_argument("--pairs", type=int, default=68)
    parser.add_argument("--dtype", default="float32", help="the in-process student's dtype")
    parser.add_argument("--concurrency", default="1,8", help="prompt_logprobs requests in flight, comma-separated")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("--url (or REFLECTION_TEST_VLLM_URL) is needed")

    import httpx

    from reflection_assets.demo_data import DEMO_TRAIN_PATH
    from reflection_assets.ingest.readers import read_dataset
    from reflection_assets.scoring.scorer import score_pairs
    from reflection_assets.scoring.student import load_student
    from reflection_assets.served.client import ServedStudent
    from reflection_assets.served.scoring import served_student

    pairs = read_dataset(DEMO_TRAIN_PATH).accepted[: args.pairs]
    served_model = args.served_model or httpx.get(args.url.rstrip("/") + "/models", timeout=10).json()["data"][0]["id"]
    report: dict = {"pairs": len(pairs), "in_process_dtype": args.dtype, "cpus": os.cpu_count(),
                    "load_before": os.getloadavg(), "runs": []}

    local = load_student("bundled", device="cpu", dtype=args.dtype)  # loading is not timed
    start = time.perf_counter()
    reference = score_pairs(pairs, local, cache=None)
    seconds = time.perf_counter() - start
    run = {"backend": f"in-process ({args.dtype})", "seconds": seconds, "pairs_per_s": len(pairs) / seconds}
    report["runs"].append(run)
    print(f"in-process {args.dtype}: {seconds:.1f}s, {len(pairs) / seconds:.3f} pairs/s", flush=True)
    del local

    for concurrency in (int(c) for c in args.concurrency.split(",")):
        server = ServedStudent(args.url, served_model, logprob_concurrency=concurrency)
        student = served_student("bundled", server)
        start = time.perf_counter()
        served = score_pairs(pairs, student, cache=None)
        seconds = time.perf_counter() - start
        run = {"backend": f"vLLM ({server.identity()['root'].rsplit('/', 1)[-1]}), concurrency {concurrency}",
               "seconds": seconds, "pairs_per_s": len(pairs) / seconds,
               "speed_vs_in_process": report["runs"][0]["seconds"] / seconds,
               "requests": server.counter.requests, **largest_difference(reference, served)}
        report["runs"].append(run)
        print(f"vLLM concurrency {concurrency}: {seconds:.1f}s, {run['pairs_per_s']:.3f} pairs/s "
              f"({run['speed_vs_in_process']:.2f}x in-process); largest IFD diff {run['largest_rel_diff_ifd']:.2%}, "
              f"r-IFD {run['largest_rel_diff_rifd']:.2%}, status mismatches {run['status_mismatches']}", flush=True)
    report["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
