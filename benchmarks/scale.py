"""The dataset stage and selection at 1k, 10k and 50k rows: ms per row and peak RSS of every step.

Synthetic Alpaca-style rows (a seeded vocabulary, Alpaca's lengths; a share of exact duplicates, near
duplicates and empty answers planted so the rejections are exercised) go through `dataset_job` and
`selection_job` as a user's run would (a real Dagster instance, the DuckDB warehouse, the IO manager), with:

- a loopback OpenAI-compatible teacher (its own process) that answers at once, and
- a tiny student (a 2-layer Llama over a BPE tokenizer trained here with `tokenizers`, 2,000 entries),

so that what is timed is the project's own work per row, not a model's. Each size runs in a fresh process
on a fresh instance and data folder; RSS is sampled every 50 ms and each step's peak is the highest sample
inside its start and end. Every row read is checked to be accepted or rejected with a reason.

A shared VM's speed drifts (the same scoring chunk took 20 s and 50 s an hour apart here), so each size also
times a fixed probe (the tiny student scoring the same 512 rows, no cache) before and after its jobs: compare
sizes whose probes agree, and run the small size again after the large one (`--sizes 5000 50000 5000`).

    python benchmarks/scale.py [--sizes 1000 10000 50000] [--json results.json]

Absolute figures: state the machine and its load beside them. The ratios across sizes are the claim.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

PARTITION = "scale"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the event stream stays in the instance
SERVER = textwrap.dedent(
    """
    import signal, sys
    sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
    from support.fault_server import FaultServer
    class Forgetful(FaultServer):  # keeps no request log: 100k requests would fill the server's memory
        def record(self, seen, auth):
            pass
    with Forgetful() as server:
        print(server.url, flush=True)
        signal.sigwait([signal.SIGTERM, signal.SIGINT])
    """
)


def vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(size)]


def sentence(rng: random.Random, words: list[str], lo: int, hi: int) -> str:
    return " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi))).capitalize() + "."


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    """Alpaca-shaped rows: instruction ~12 words, input on 40 % of rows, output ~60 words.

    Planted: 1 % exact duplicates of an earlier row, 1 % near duplicates (one word changed), 0.5 % empty
    outputs: the ingest's reasons must account for each of them.
    """
    rng = random.Random(seed)
    words = vocabulary(rng)
    rows: list[dict] = []
    for _ in range(n):
        draw = rng.random()
        if rows and draw < 0.01:
            rows.append(dict(rng.choice(rows)))
            continue
        if rows and draw < 0.02:
            row = dict(rng.choice(rows))
            row["output"] = row["output"].rstrip(".") + f" {rng.choice(words)}."
            rows.append(row)
            continue
        rows.append({
            "instruction": sentence(rng, words, 6, 18),
            "input": sentence(rng, words, 4, 20) if rng.random() < 0.4 else "",
            "output": "" if draw < 0.025 else " ".join(sentence(rng, words, 6, 14) for _ in range(rng.randint(2, 6))),
        })
    return rows


def build_student(folder: Path, rows: list[dict]) -> Path:
    """A 2-layer Llama (seeded) over a 2,000-entry byte-level BPE trained on the rows and the prompts."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from support.tiny_lm import bpe_tokenizer

    corpus = [" ".join((r["instruction"], r["input"], r["output"])) for r in rows[:2000]]
    tokenizer = bpe_tokenizer(corpus, vocab_size=2000)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).eval().save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


class RssSampler:
    """Resident set size of this process every `interval` seconds, with the time of each sample."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self.process, self.interval = psutil.Process(), interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self.process.memory_info().rss))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, end: float) -> int:
        inside = [rss for at, rss in self.samples if start <= at <= end]
        return max(inside) if inside else 0


def probe_seconds(student: Path) -> float:
    """Seconds for the tiny student to score 512 fixed rows (no cache): this machine's speed right now."""
    from reflection_assets.schema import Pair
    from reflection_assets.scoring.scorer import score_pairs
    from reflection_assets.scoring.student import load_student

    rows = synthetic_rows(512, seed=1)
    pairs = [Pair(r["instruction"], r["output"] or "-", input=r["input"]) for r in rows]
    loaded = load_student(str(student), device="cpu", dtype="float32")
    started = time.perf_counter()
    score_pairs(pairs, loaded)
    return round(time.perf_counter() - started, 2)


def run_size(n: int, url: str) -> dict:
    """One size in this process: a fresh instance and data folder, both jobs, each step's seconds and peak RSS."""
    work = Path(tempfile.mkdtemp(prefix=f"scale-{n}-"))
    rows = synthetic_rows(n)
    source = work / "alpaca_synthetic.json"
    source.write_text(json.dumps(rows))
    student = build_student(work / "student", rows)
    os.environ.update(
        DAGSTER_HOME=str(work), REFLECTION_DATA_DIR=str(work / "data"), REFLECTION_STUDENT=str(student),
        REFLECTION_TEACHER_BASE_URL=url, REFLECTION_TEACHER_MODEL="instant", TOKENIZERS_PARALLELISM="false",
    )
    (work / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    import dagster as dg

    from reflection_assets.defs.definitions import defs
    from reflection_assets.defs.partitions import DATASETS
    from reflection_assets.ingest.registry import DatasetSource, register_source
    from reflection_assets.storage import storage_from_env

    instance = dg.DagsterInstance.get()
    register_source(storage_from_env().store(), PARTITION, DatasetSource(str(source)))
    instance.add_dynamic_partitions(DATASETS, [PARTITION])
    steps: dict[str, dict] = {}
    probe_before = probe_seconds(student)
    with RssSampler() as rss:
        for job, partition in (("dataset_job", PARTITION), ("selection_job", None)):
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance, partition_key=partition, raise_on_error=False, run_config=QUIET
            )
            if not result.success:
                failure = [e.message for e in result.all_events if e.is_failure]
                raise SystemExit(f"{job} failed at {n} rows: {failure}")
            for stat in instance.get_run_step_stats(result.run_id):
                seconds = stat.end_time - stat.start_time
                steps[stat.step_key] = {"s": round(seconds, 2), "ms_per_row": round(1000 * seconds / n, 3),
                                        "peak_rss_mb": round(rss.peak(stat.start_time, stat.end_time) / 2**20)}
    peak = round(max(size for _, size in rss.samples) / 2**20)
    probes = [probe_before, probe_seconds(student)]
    return {"rows": n, "steps": steps, "accounted": accounted(n), "peak_rss_mb": peak, "probe_s": probes}


def accounted(n: int) -> dict:
    """Rows accepted and rejected (by reason) in the warehouse; every row read must be one of the two."""
    import duckdb

    from reflection_assets.paths import warehouse_path

    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        tables = {name for (name,) in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        accepted = conn.execute("SELECT count(*) FROM raw_instructions").fetchone()[0]
        reasons = dict(conn.execute("SELECT reason, count(*) FROM rejected_rows GROUP BY reason").fetchall()) \
            if "rejected_rows" in tables else {}
        selected = conn.execute("SELECT count(*) FROM selected_dataset").fetchone()[0]
    rejected = sum(reasons.values())
    if accepted + rejected != n:
        raise SystemExit(f"{n} rows read but {accepted} accepted + {rejected} rejected")
    return {"accepted": accepted, "rejected": reasons, "selected": selected}


def child(n: int, url: str, out: str) -> None:
    Path(out).write_text(json.dumps(run_size(n, url)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(int(args.child[0]), args.child[1], args.child[2])
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(REPO)], stdout=subprocess.PIPE, text=True)
    results = []
    try:
        url = server.stdout.readline().strip()
        for n in args.sizes:
            out = tempfile.mktemp(suffix=".json")
            started = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--child", str(n), url, out], check=True)
            result = json.loads(Path(out).read_text())
            result["wall_s"] = round(time.perf_counter() - started, 1)
            results.append(result)
            print(json.dumps(result), flush=True)
    finally:
        server.terminate()
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def print_table(results: list[dict]) -> None:
    sizes = [r["rows"] for r in results]
    print("\n| step | " + " | ".join(f"{n:,} ms/row | {n:,} peak MB" for n in sizes) + " |")
    print("| --- |" + " ---: | ---: |" * len(sizes))
    for step in results[-1]["steps"]:
        cells = []
        for r in results:
            s = r["steps"].get(step, {})
            cells += [str(s.get("ms_per_row", "")), str(s.get("peak_rss_mb", ""))]
        print(f"| {step} | " + " | ".join(cells) + " |")
    for r in results:
        print(f"{r['rows']:,} rows: {r['accounted']}, wall {r['wall_s']} s, peak {r['peak_rss_mb']} MB, "
              f"probe before/after {r['probe_s']} s")


if __name__ == "__main__":
    main()
