"""`reflection-tuning demo` when the student keeps no rewrite: it finishes and says why."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from reflection_assets.defs.definitions import defs
from reflection_assets.defs.jobs import run_asset_selection
from reflection_assets.paths import warehouse_path
from support.fault_server import FaultServer
from support.tiny_lm import tiny_model, tiny_tokenizer

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow  # starts a server, runs every job of the demo

# Every reply of the server is unparsable for these rows: no rewrite survives, so nothing is selected.
ROWS = [
    {"instruction": f"ROW=d{i} FAULT=unparsable Explain photosynthesis.", "output": f"Plants use light ({i})."}
    for i in range(3)
]


@pytest.fixture
def tiny_student(tmp_path):
    folder = tmp_path / "tiny-student"
    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_demo_with_an_empty_selection_finishes_and_says_why(tmp_path, tiny_student):
    source = tmp_path / "rejected_by_student.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    home = tmp_path / "home"
    home.mkdir()
    with FaultServer() as server:
        # Its own process, as `make demo` is: the definitions read these settings when first imported.
        env = {**os.environ, "DAGSTER_HOME": str(home), "REFLECTION_TEACHER_BASE_URL": server.url,
               "REFLECTION_TEACHER_MODEL": "fault-model", "REFLECTION_STUDENT": str(tiny_student)}
        demo = subprocess.run(
            [sys.executable, "-c", "import sys; from reflection_assets.cli import main; sys.exit(main())",
             "demo", "--source", str(source), "--arms", "selective,random", "--max-new-tokens", "16"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
        )
    out = demo.stdout
    assert demo.returncode == 0, out + demo.stderr[-3000:]
    assert "0 of 3 rows were selected (answer_lost 3): the arms sized to it are skipped with that reason" in out
    assert "Done in" in out
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        counts = conn.execute("SELECT count(*), count(*) FILTER (WHERE selected) FROM selected_dataset").fetchone()
        assert counts == (3, 0)
        assert conn.execute("SELECT count(*) FROM arm_datasets").fetchone() == (0,)
    # Each run names the assets it runs, so automation (if the daemon is up) does not take them for news.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert runs and all(run.asset_selection == set(run_asset_selection(defs.resolve_job_def(run.job_name)))
                            for run in runs)
