"""The demo's dataset stage with its asset tables on the shared store (Delta Lake in an S3-compatible bucket)
vs the local DuckDB file, side by side in one run.

The demo's per-dataset job (`dataset_job` on the embedded demo partition, the tour size's teacher config, the
bundled SmolLM2 as teacher and student) first runs once cold, locally, to fill the caches (`llm_calls`,
`student_scores`). Then, alternating, each repeat starts from a copy of that warm warehouse file on a fresh
Dagster instance: `local` writes the tables into the copy, `shared` (REFLECTION_STORAGE=shared) into a fresh
root in the bucket (moto's S3 server on 127.0.0.1). With every teacher call and forward pass a cache hit, what
differs is where the seven tables are read and written. Absolute seconds: state the machine and its load.

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
import time
import urllib.request
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


def start_object_store(work: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.dagster_dev import free_port

    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2)
            break
        except OSError:
            time.sleep(0.2)
    keys = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_REGION": "us-east-1",
            "REFLECTION_S3_ENDPOINT_URL": url}
    import boto3

    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench",
                 aws_secret_access_key="bench-secret").create_bucket(Bucket="reflection")
    return server, keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="warm runs per store, alternating")
    parser.add_argument("--limit", type=int, default=None, help="reflect only the first N rows")
    args = parser.parse_args(argv)

    from reflection_assets.commands.demo import SIZES, teacher_stage

    stage = teacher_stage(SIZES["tour"], limit=args.limit)
    config = {"ops": {name: {"config": stage} for name in ("instruction_reflections", "response_reflections")}}
    work = Path(tempfile.mkdtemp(prefix="shared-storage-"))
    server, store_env = start_object_store(work)
    try:
        uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
        warm = work / "warm"
        cold = run_stage(work, warm, config, {})
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
            "cold_local_s": cold["seconds"], "warm_seconds": seconds, "local_median_s": local,
            "shared_median_s": shared, "shared_over_local": round(shared / local, 2), "limit": args.limit,
            "load_before": uptime,
            "load_after": subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip(),
        }, indent=2))
    finally:
        server.terminate()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
