"""Whole-process timing: `reflection-tuning score` against the reference loop, side by side.

Each side is a fresh Python process that imports its stack, loads the model from the local
safetensors cache, scores the same pairs and writes JSONL -- what a user waits for. The two
alternate (A B, then B A, ...) so a change in machine load hits both; the ratio is the sum of
the reference's times over the sum of the command's (wall and CPU time), and the outputs are
checked to agree.

    python benchmarks/score_cli_vs_reference.py --n 120 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ifd_throughput import LOSS_FIELDS  # benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process.

    CPU time is the steadier figure on a shared machine: other processes stretch the wall time
    of whichever side happens to run beside them, but hardly the work each side does.
    """
    cpu_before, started = cpu_of_children(), time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed, cpu = time.perf_counter() - started, cpu_of_children() - cpu_before
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr[-2000:]}")
    return elapsed, cpu


def worst(a: Path, b: Path) -> float:
    rows_a = [json.loads(line) for line in a.read_text().splitlines()]
    rows_b = [json.loads(line) for line in b.read_text().splitlines()]
    assert [r["id"] for r in rows_a] == [r["id"] for r in rows_b], "row order differs"
    return max(
        (
            abs(x[f] - y[f])
            for x, y in zip(rows_a, rows_b)
            for f in LOSS_FIELDS
            if x[f] is not None and y[f] is not None
        ),
        default=0.0,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument(
        "--rounds", type=int, default=2, help="each round runs both once; odd rounds start with the reference"
    )
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--student", default="bundled")
    parser.add_argument(
        "--threads", type=int, default=None, help="OMP_NUM_THREADS for both sides (default: torch's choice)"
    )
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if args.threads:  # one thread per process is far less sensitive to other processes on a shared CPU
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    work = Path(tempfile.mkdtemp(prefix="score-bench-"))
    pairs = work / "pairs.jsonl"
    python = sys.executable
    run([python, "benchmarks/ifd_throughput.py", "--write-pairs", str(pairs), "--n", str(args.n)], env)
    common = ["--input", str(pairs), "--max-length", str(args.max_length)]
    cli = [python, "-m", "reflection_assets.cli", "score", *common, "--output", str(work / "cli.jsonl"),
           "--student", args.student, "--quiet"]  # fmt: skip
    ref = [python, "benchmarks/ifd_throughput.py", "--reference-only", *common, "--output", str(work / "ref.jsonl"),
           "--model", args.student]  # fmt: skip
    # Warm the model cache (GGUF de-quantized once) and the OS file cache; not timed.
    run([python, "-c", f"from reflection_assets.model_store import local_dir; local_dir({args.student!r})"], env)

    wall: dict[str, list[float]] = {"cli": [], "reference": []}
    cpu: dict[str, list[float]] = {"cli": [], "reference": []}
    for round_no in range(args.rounds):
        order = [("reference", ref), ("cli", cli)] if round_no % 2 == 0 else [("cli", cli), ("reference", ref)]
        for name, cmd in order:
            elapsed, used = run(cmd, env)
            wall[name].append(elapsed)
            cpu[name].append(used)
            print(
                f"round {round_no + 1}: {name} wall {elapsed:.1f}s cpu {used:.1f}s load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    ratio = lambda t: round(sum(t["reference"]) / sum(t["cli"]), 2)  # noqa: E731
    print(
        json.dumps(
            {
                "pairs": args.n,
                "max_length": args.max_length,
                "rounds": args.rounds,
                "threads": args.threads or "default",
                "cli_wall_s": [round(t, 1) for t in wall["cli"]],
                "reference_wall_s": [round(t, 1) for t in wall["reference"]],
                "cli_cpu_s": [round(t, 1) for t in cpu["cli"]],
                "reference_cpu_s": [round(t, 1) for t in cpu["reference"]],
                "wall_ratio": ratio(wall),
                "cpu_ratio": ratio(cpu),
                "wall_ratio_per_round": [round(r / c, 2) for r, c in zip(wall["reference"], wall["cli"])],
                "worst_abs_diff": worst(work / "cli.jsonl", work / "ref.jsonl"),
                "cpu_count": os.cpu_count(),
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            }  # fmt: skip
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
