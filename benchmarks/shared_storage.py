"""The demo's dataset stage on the shared stores (asset tables as Delta Lake in an S3-compatible bucket, caches in
Postgres) vs the local DuckDB file, side by side in one run.

The demo's per-dataset job (`dataset_job` on the embedded demo partition, the tour size's teacher config, the
bundled SmolLM2 as teacher and student) first runs once cold, locally, to fill the caches (`llm_calls`,
`student_scores`), which are then copied into a Postgres database too. Then, alternating, each repeat starts
from a copy of that warm warehouse file on a fresh Dagster instance: `local` reads the caches from the copy and
writes the tables into it, `shared` (REFLECTION_STORAGE=shared) reads the caches from Postgres and writes the
tables under a fresh root in the bucket (Debian's Postgres and moto's S3 server on 127.0.0.1, started as the tests
start them). With every teacher call and forward pass a cache hit, what differs is where the seven tables and the
cache lookups go. Absolute seconds: state the machine and its load. Needs Postgres installed (as .ci/run does).

    OMP_NUM_THREADS=1 python benchmarks/shared_storage.py [--repeats 2] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RUN = """
import json, sys, time, dagster as dg
from reflection_assets.defs.definitions import defs
from reflection_assets.defs.partitions import DATASETS
from reflection_assets.demo_data import DEMO_PARTITION
instance = dg.DagsterInstance.get()
instance.add_dynamic_partitions(DATASETS, [DEMO_PARTITION])
start = time.perf_counter()
result = defs.resolve_job_def("dataset_job").execute_in_process(
    instance=instance, partition_key=DEMO_PARTITION, run_config=json.loads(sys.argv[1]), raise_on_error=False)
print(json.dumps({"success": result.success, "seconds": round(time.perf_counter() - start, 2)}))
"""


def run_stage(work: Path, data: Path, config: dict, extra_env: dict[str, str]) -> dict:
    """The dataset job in a fresh process and instance over `data`; its result line."""
    home = Path(tempfile.mkdtemp(dir=work, prefix="home-"))
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "REFLECTION_DATA_DIR": str(data),
           "REFLECTION_MODELS_DIR": str(work / "models"), **extra_env}  # the model converted once
    done = subprocess.run([sys.executable, "-c", RUN, json.dumps(config)], env=env, capture_output=True, text=True,
                          check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"the dataset job failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def start_shared_stores():
    """Postgres, the object store (and the MLflow server) on loopback, as tests/support/shared_stores.py starts
    them for the tests."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.shared_stores import SharedStoreServers, postgres_bin

    bin_dir = postgres_bin()
    if bin_dir is None:
        raise SystemExit("Postgres is not installed (apt-get install postgresql)")
    servers = SharedStoreServers()
    return servers, servers.start(bin_dir)


def copy_caches(warehouse: Path, store: str) -> dict[str, int]:
    """The warm caches of the local file, copied row for row into the Postgres store's same tables."""
    import duckdb

    from reflection_assets.database import connect
    from reflection_assets.scoring.cache import StudentScoreCache
    from reflection_assets.teacher.cache import CallCache

    CallCache(store).count()  # each creates its table with its own statement
    StudentScoreCache(store).count()
    copied = {}
    with duckdb.connect(str(warehouse), read_only=True) as source, connect(store) as target:
        for table in ("llm_calls", "student_scores"):
            frame = source.execute(f"SELECT * FROM {table}").df()
            columns = ", ".join(frame.columns)
            marks = ", ".join("?" for _ in frame.columns)
            rows = [[None if value != value else value for value in row]  # NaN/NaT -> NULL
                    for row in frame.astype(object).itertuples(index=False)]
            target.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
            copied[table] = len(rows)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="warm runs per store, alternating")
    parser.add_argument("--limit", type=int, default=None, help="reflect only the first N rows")
    args = parser.parse_args(argv)

    from reflection_assets.commands.demo import SIZES, teacher_stage

    stage = teacher_stage(SIZES["tour"], limit=args.limit)
    config = {"ops": {name: {"config": stage} for name in ("instruction_reflections", "response_reflections")}}
    work = Path(tempfile.mkdtemp(prefix="shared-storage-"))
    servers, stores = start_shared_stores()
    try:
        uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
        warm = work / "warm"
        cold = run_stage(work, warm, config, {})
        store_env = {**stores.node_env(), "REFLECTION_STORE_URL": stores.fresh_store()}
        store_env.pop("MLFLOW_TRACKING_URI")  # both arms log to the node's own MLflow file, as the local one does
        copied = copy_caches(warm / "warehouse.duckdb", store_env["REFLECTION_STORE_URL"])
        seconds: dict[str, list[float]] = {"local": [], "shared": []}
        for repeat in range(args.repeats):
            for store in ("local", "shared"):
                data = work / f"{store}-{repeat}"
                shutil.copytree(warm, data, ignore=shutil.ignore_patterns("models"))
                env = {} if store == "local" else {
                    **store_env, "REFLECTION_STORAGE": "shared", "REFLECTION_TABLES_URI": f"s3://reflection/r{repeat}"}
                result = run_stage(work, data, config, env)
                seconds[store].append(result["seconds"])
        local, shared = statistics.median(seconds["local"]), statistics.median(seconds["shared"])
        print(json.dumps({
            "cold_local_s": cold["seconds"], "caches_copied": copied, "warm_seconds": seconds, "local_median_s": local,
            "shared_median_s": shared, "shared_over_local": round(shared / local, 2), "limit": args.limit,
            "load_before": uptime,
            "load_after": subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip(),
        }, indent=2))
    finally:
        servers.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
