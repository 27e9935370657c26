"""Loading the Dagster code location with the model libraries left unloaded vs loaded beside it, side by side.

The webserver, the daemon and every step process import `reflection_assets.defs.definitions` before they do
anything. Until 5c557d6 that import pulled torch and transformers in with it (the generation request types
lived beside the engine); now they load only where a model runs. The reference is the same import followed by
`import torch, transformers`: exactly what the old load paid, in the same environment. Each sample is a fresh
interpreter; the two sides alternate so a busy machine slows both alike.

    .venv/bin/python benchmarks/code_location_load.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIDES = {
    "definitions (models unloaded)": "import reflection_assets.defs.definitions",
    "definitions + torch + transformers (the old load)": (
        "import reflection_assets.defs.definitions, torch, transformers"
    ),
}


def seconds_to_run(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per side (default 7)")
    args = parser.parse_args()
    seconds_to_run("import reflection_assets.defs.definitions, torch, transformers")  # warm the file cache once
    samples: dict[str, list[float]] = {name: [] for name in SIDES}
    for _ in range(args.runs):
        for name, code in SIDES.items():
            samples[name].append(seconds_to_run(code))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"| side | median s ({args.runs} runs) | min s | max s |")
    print("| --- | --- | --- | --- |")
    for name, values in samples.items():
        print(f"| {name} | {medians[name]:.2f} | {min(values):.2f} | {max(values):.2f} |")
    new, old = medians.values()
    print(f"\nold / new: {old / new:.2f}x")


if __name__ == "__main__":
    main()
