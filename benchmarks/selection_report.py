"""Run the whole graph on one dataset in a fresh instance and report the method's decisions.

    python benchmarks/selection_report.py --source demo
    python benchmarks/selection_report.py --source alpaca --rows 100 --max-new-tokens 128

`alpaca` reads ../shared/data/alpaca_cherry_5pct.json (beside the repository) and takes the first
`--rows` pairs whose output is under `--max-output-chars` characters (long answers only make a CPU
run slower; the filter is stated in the report). Prints the four published decision counts, how
many passed the filter, each arm's size, teacher parse rates and the wall time, as markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
ALPACA = REPO.parent / "shared" / "data" / "alpaca_cherry_5pct.json"


def alpaca_subset(rows: int, max_chars: int, out: Path) -> Path:
    if not ALPACA.exists():
        sys.exit(f"{ALPACA} is absent: this benchmark needs the shared Alpaca data")
    records = [r for r in json.loads(ALPACA.read_text()) if len(r.get("output", "")) < max_chars][:rows]
    path = out / f"alpaca_{rows}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def report(database: Path) -> str:
    with duckdb.connect(str(database), read_only=True) as conn:
        q = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
        lines = ["| stage 1 (instruction) | stage 2 (answer reflection) | rows | passed IFD<1 & r-IFD<1 | selected |",
                 "| --- | --- | ---: | ---: | ---: |"]
        for choice1, choice2, rows, passed, selected in q(
            "SELECT instruction_choice, response_choice, count(*), sum(passes_filter::INT), sum(selected::INT) "
            "FROM selected_dataset GROUP BY 1, 2 ORDER BY 1, 2"
        ):
            lines.append(f"| {choice1} | {choice2} | {rows} | {passed} | {selected} |")
        lines += [
            "",
            "| teacher stage | " + " | ".join(["reflected", "parse_failed", "teacher_error", "skipped"]) + " |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for table in ("instruction_reflections", "response_reflections"):
            counts = dict(q(f"SELECT outcome, count(*) FROM {table} GROUP BY 1"))
            lines.append(f"| {table} | " + " | ".join(str(counts.get(k, 0)) for k in
                                                     ("reflected", "parse_failed", "teacher_error", "skipped")) + " |")
        arms = dict(q("SELECT arm, count(*) FROM arm_datasets GROUP BY 1"))
        lines += ["", "arm sizes: " + ", ".join(f"{a}={arms.get(a, 0)}" for a in
                                              ("selective", "reflected_all", "ifd_topk", "random", "full"))]
        raw = q("SELECT count(*), avg(ifd_ppl), avg((ifd_ppl >= 1)::INT) FROM raw_ifd_scores WHERE ifd_status = 'ok'")[
            0
        ]
        lines.append(f"raw pairs scored: {raw[0]}, mean IFD {raw[1]:.3f}, share IFD >= 1: {raw[2]:.1%}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="demo", help="demo | alpaca | a dataset file")
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--max-output-chars", type=int, default=600)
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--workdir", default=None, help="where the instance and data go (default: a new temp dir)")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="selection-report-"))
    (work / "home").mkdir(parents=True, exist_ok=True)
    (work / "home" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    source = None
    if args.source == "alpaca":
        source = alpaca_subset(args.rows, args.max_output_chars, work)
    elif args.source != "demo":
        source = Path(args.source).resolve()
    env = {**os.environ, "DAGSTER_HOME": str(work / "home"), "REFLECTION_DATA_DIR": str(work / "data"),
           "REFLECTION_MODELS_DIR": os.environ.get("REFLECTION_MODELS_DIR", str(REPO / "data" / "models")),
           "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "reflection_assets.cli", "demo", "--max-new-tokens", str(args.max_new_tokens)]
    if source:
        command += ["--source", str(source)]
    started = time.monotonic()
    with open(work / "demo.log", "w") as log:
        done = subprocess.run(command, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        print(f"demo failed ({done.returncode}); log: {work / 'demo.log'}", file=sys.stderr)
        return 1
    print(f"## {args.source} ({source or 'embedded demo set'}), teacher max_new_tokens={args.max_new_tokens}\n")
    print(report(work / "data" / "warehouse.duckdb"))
    print(
        f"\nwall time: {elapsed / 60:.1f} min (whole graph, CPU, bundled SmolLM2-135M teacher and student); "
        f"workdir {work}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
