"""Near-duplicate index at scale: rows/s and peak memory of building and querying it (issue 24).

Synthetic rows: random sequences of 60-140 words from a 5,000-word vocabulary (about the length of an
Alpaca row), with every 20th row a planted near-duplicate of an earlier one (one word replaced, its
punctuation changed). Each row goes through `NearDuplicateIndex.check` (signature, LSH query,
confirmation, insert), as the ingest does. Each size runs in a fresh process; memory is that process's
peak resident size (resource.getrusage ru_maxrss) after the build minus before it (rows generated,
libraries imported), so the index's own footprint, not the interpreter's or the input's; the 1M-row
figure extrapolates the per-row figure linearly (tracemalloc would count the same but slow the build).

    .venv/bin/python benchmarks/dedup_index.py [--rows 10000 100000] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from reflection_assets.ingest.near_duplicates import NearDuplicateIndex, NearDuplicateSettings

PLANT_EVERY = 20


def synthetic_rows(count: int, seed: int = 0) -> tuple[list[str], int]:
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(5000)]
    rows: list[str] = []
    planted = 0
    for i in range(count):
        if i and i % PLANT_EVERY == 0:
            words = rows[rng.randrange(len(rows))].replace(",", "").split()
            words[rng.randrange(len(words))] = rng.choice(vocabulary)
            rows.append(", ".join(words[:5]) + " " + " ".join(words[5:]) + "!")
            planted += 1
        else:
            rows.append(" ".join(rng.choices(vocabulary, k=rng.randint(60, 140))))
    return rows, planted


def measure(count: int) -> dict[str, float | int]:
    rows, planted = synthetic_rows(count)
    index = NearDuplicateIndex(NearDuplicateSettings())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    started = time.perf_counter()
    found = sum(index.check(str(i), f"row {i}", text) is not None for i, text in enumerate(rows))
    seconds = time.perf_counter() - started
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    return {
        "rows": count,
        "planted": planted,
        "found": found,
        "seconds": round(seconds, 1),
        "rows_per_s": round(count / seconds),
        "peak_mib": round(peak / 2**20, 1),
        "bytes_per_row": round(peak / count),
        "extrapolated_1m_gib": round(peak / count * 1_000_000 / 2**30, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = []
    for count in args.rows:  # a fresh process per size: ru_maxrss only ever grows
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            results.append(pool.submit(measure, count).result())
    print("| rows | planted | found | seconds | rows/s | peak MiB | bytes/row | 1M rows (GiB, extrapolated) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['rows']:,} | {r['planted']:,} | {r['found']:,} | {r['seconds']} | {r['rows_per_s']:,} | "
              f"{r['peak_mib']} | {r['bytes_per_row']:,} | {r['extrapolated_1m_gib']} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
