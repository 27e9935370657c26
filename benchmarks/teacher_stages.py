"""Wall time of the demo's two teacher stages (instruction and answer reflection) with the in-process engine.

Runs the demo's per-dataset job as `make demo` does (the tour size's run config: 96-token sections, a
16-token critique, guided, bundled SmolLM2 as teacher and student) on a fresh Dagster instance and
data folder, then reads each step's duration from the instance. Absolute seconds: state the machine
and its load beside them.

    OMP_NUM_THREADS=1 python benchmarks/teacher_stages.py [--limit N] [--max-new-tokens 96]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

STAGES = ("instruction_reflections", "response_reflections")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="reflect only the first N rows")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="tokens per section (default: the demo's)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="teacher-stages-"))
    os.environ.update(DAGSTER_HOME=str(work), REFLECTION_DATA_DIR=str(work / "data"))
    (work / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    import dagster as dg

    from reflection_assets.commands.demo import SIZES, teacher_stage
    from reflection_assets.defs.definitions import defs
    from reflection_assets.defs.partitions import DATASETS
    from reflection_assets.demo_data import DEMO_PARTITION

    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions(DATASETS, [DEMO_PARTITION])
    stage = teacher_stage(SIZES["tour"], args.max_new_tokens, args.limit)
    config = {"ops": {name: {"config": stage} for name in STAGES}}
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    result = defs.resolve_job_def("dataset_job").execute_in_process(
        instance=instance, partition_key=DEMO_PARTITION, run_config=config, raise_on_error=False
    )
    steps = {s.step_key: s for s in instance.get_run_step_stats(result.run_id)}
    seconds = {name: round(steps[name].end_time - steps[name].start_time, 1) for name in STAGES if name in steps}
    report = {"success": result.success, "limit": args.limit, "stage_seconds": seconds,
              "teacher_stages_s": round(sum(seconds.values()), 1), "load_before": uptime,
              "load_after": subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()}
    print(json.dumps(report, indent=2))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
