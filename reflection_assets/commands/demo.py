"""`reflection-tuning demo`: materialize the whole default graph, in order, on one Dagster instance.

No CLI command adds a dynamic partition and one run cannot mix partitionings, so this driver
registers the dataset partition, then runs the per-dataset job, the selection job and the
per-arm job, all recorded in the instance (`DAGSTER_HOME`) so the web UI shows them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default=None, help="dataset file/folder/name (default: $REFLECTION_DATA or the demo set)")
    parser.add_argument("--partition", default=None, help="partition key (default: derived from the source, or 'demo')")
    parser.add_argument("--arms", default=None, help="comma-separated arms to build (default: all)")
    parser.add_argument("--max-new-tokens", type=int, default=192, help="teacher tokens per reflection section (default: 192)")
    parser.add_argument("--limit", type=int, default=None, help="reflect only the first N rows (trial runs)")


def run(args: argparse.Namespace) -> int:
    if not os.environ.get("DAGSTER_HOME"):
        print("DAGSTER_HOME is not set: run `make demo`, or export DAGSTER_HOME=$PWD", file=sys.stderr)
        return 2
    import dagster as dg

    from reflection_assets.definitions import defs
    from reflection_assets.partitions import ARMS, DATASETS, DEMO_PARTITION
    from reflection_assets.paths import warehouse_path
    from reflection_assets.sources import DatasetSource, partition_key_for, register_source

    source = args.source or os.environ.get("REFLECTION_DATA")
    key = args.partition or (partition_key_for(source) if source else DEMO_PARTITION)
    instance = dg.DagsterInstance.get()
    if source:
        register_source(warehouse_path(), key, DatasetSource(source))
    instance.add_dynamic_partitions(DATASETS, [key])
    started = time.monotonic()

    steps: list[tuple[str, str | None]] = [("dataset_job", key), ("selection_job", None)]
    arms = args.arms.split(",") if args.arms else list(ARMS)
    steps += [("arms_job", arm) for arm in arms]
    steps.append(("evaluation_job", None))
    for job_name, partition in steps:
        try:
            job = defs.resolve_job_def(job_name)
        except Exception:  # noqa: BLE001 - a job not defined in this build is skipped, and said so
            print(f"- {job_name}: not defined, skipped")
            continue
        label = f"{job_name}[{partition}]" if partition else job_name
        if job_name == "evaluation_job" and not has_table(warehouse_path(), "lora_checkpoint"):
            print(f"- {label}: no lora_checkpoint table (no arm trained in this build), skipped")
            continue
        print(f"- {label} ...", flush=True)
        run_config = dataset_run_config(args) if job_name == "dataset_job" else None
        result = job.execute_in_process(
            instance=instance, partition_key=partition, run_config=run_config, raise_on_error=False
        )
        if not result.success:
            print(f"{label} failed (run {result.run_id}); see `make dev` -> Runs for the logs", file=sys.stderr)
            return 1
    print(summary(str(warehouse_path()), time.monotonic() - started))
    print(ablation_summary(str(warehouse_path())))
    return 0


def dataset_run_config(args: argparse.Namespace) -> dict:
    """Short teacher outputs keep the CPU demo to minutes; everything else keeps its defaults."""
    stage = {"max_new_tokens": args.max_new_tokens, "limit": args.limit}
    return {"ops": {name: {"config": stage} for name in ("instruction_reflections", "response_reflections")}}


def has_table(database, table: str) -> bool:
    from resources.warehouse import connect, table_exists

    with connect(database, read_only=True) as conn:
        return table_exists(conn, table)


def ablation_summary(database: str) -> str:
    """The demo ends with the ablation table (base and every evaluated arm, intervals, verdicts)."""
    if not has_table(database, "ablation_report"):
        return "No ablation report (evaluation did not run)."
    from reflection_assets.evaluation.report import markdown_table, positive_control_note
    from resources.warehouse import connect

    with connect(database, read_only=True) as conn:
        table = conn.execute("SELECT * FROM ablation_report").df()
    title = "Ablation report (95% paired bootstrap intervals):"
    return f"\n{title}\n{markdown_table(table)}\n{positive_control_note(table)}"


def summary(database: str, seconds: float) -> str:
    """Where to look after the demo: tables and their sizes, MLflow, the UI."""
    from reflection_assets.deployment import build_resources
    from resources.warehouse import connect

    lines = [f"\nDone in {seconds:.0f}s. Warehouse: {database}"]
    with connect(database, read_only=True) as conn:
        tables = conn.execute("SELECT table_name FROM information_schema.tables ORDER BY table_name").fetchall()
        for (table,) in tables:
            count = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            lines.append(f"  {table:28s} {count:>8d} rows")
    tracking = build_resources()["mlflow"]
    lines += [
        f"MLflow store: {tracking.resolved_uri()}  (make mlflow-ui)",
        "Dagster UI with lineage and run logs: make dev  (http://127.0.0.1:3000)",
    ]
    return "\n".join(lines)
