"""Scale-out on one machine: two dataset partitions run at once as two Dagster runs, each on the
multiprocess executor (every step its own process), all writing one DuckDB warehouse, and no row
is lost. The teacher is the loopback OpenAI-compatible server, the student a tiny random model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from support.fault_server import FaultServer
from support.tiny_lm import tiny_model, tiny_tokenizer

REPO = Path(__file__).resolve().parents[2]
DATASETS = {"alpha": 5, "beta": 4}  # partition -> rows
PER_DATASET = ["raw_instructions", "raw_ifd_scores", "instruction_reflections", "instruction_ifd_scores",
               "response_reflections", "response_scores"]

pytestmark = pytest.mark.slow  # two runs of six step processes each


# In both files: the `ingest` pool's one slot makes the second ingest see the first one's kept rows, so one
# partition keeps the pair and the other rejects it as a near-duplicate (two ingests at once would keep both).
SHARED_ROW = {"instruction": "ROW=shared Explain why the sky looks blue at noon.", "output": "Air scatters blue light."}


def write_dataset(path: Path, name: str, rows: int) -> Path:
    rows_ = [{"instruction": f"ROW={name}{i} Explain item {i} of {name}.", "output": f"Item {i} of {name}."}
             for i in range(rows)]
    path.write_text("".join(json.dumps(row) + "\n" for row in [*rows_, SHARED_ROW]))
    return path


def test_two_partitions_in_parallel_lose_no_row(tmp_path):
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    student = tmp_path / "student"
    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer).save_pretrained(student)
    tokenizer.save_pretrained(student)

    with FaultServer(latency_s=0.05) as server:
        env = {**os.environ, "DAGSTER_HOME": str(home), "REFLECTION_DATA_DIR": str(data),
               "REFLECTION_TEACHER_BASE_URL": server.url, "REFLECTION_TEACHER_MODEL": "fault-model",
               "REFLECTION_STUDENT": str(student), "OMP_NUM_THREADS": "1"}
        sources = [f"{k}={write_dataset(tmp_path / f'{k}.jsonl', k, n)}" for k, n in DATASETS.items()]
        subprocess.run([sys.executable, str(REPO / "tests" / "support" / "register_partitions.py"), *sources],
                       cwd=REPO, env=env, check=True, timeout=120)
        subprocess.run([str(Path(sys.executable).parent / "dagster"), "instance", "concurrency", "set", "ingest", "1"],
                       cwd=REPO, env=env, check=True, timeout=120, capture_output=True)  # as `make concurrency`
        runs = [
            subprocess.Popen(
                [str(Path(sys.executable).parent / "dagster"), "job", "execute",
                 "-m", "reflection_assets.defs.definitions", "-a", "defs", "-j", "dataset_job",
                 "--tags", json.dumps({"dagster/partition": key})],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            for key in DATASETS
        ]
        outputs = [run.communicate(timeout=900)[0] for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-3000:]
        assert "RUN_SUCCESS" in output and "multiprocess" in output.lower(), output[-3000:]

    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as conn:
        (kept_by,) = conn.execute("SELECT dataset FROM raw_instructions WHERE instruction = ?",
                                  [SHARED_ROW["instruction"]]).fetchone()
        rejected = conn.execute("SELECT dataset, reason FROM rejected_rows").fetchall()
        expected = {key: rows + (key == kept_by) for key, rows in DATASETS.items()}
        for table in PER_DATASET:
            query = f"SELECT dataset, count(DISTINCT row_id) FROM {table} GROUP BY dataset"
            counts = dict(conn.execute(query).fetchall())
            assert counts == expected, table
        calls = conn.execute("SELECT count(*) FROM llm_calls WHERE status = 'ok'").fetchone()[0]
    assert rejected == [(next(key for key in DATASETS if key != kept_by), "near_duplicate")]
    assert calls == 2 * sum(expected.values())  # both stages, every row, once
