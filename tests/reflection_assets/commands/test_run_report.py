"""The run report reads a real DuckDB warehouse; missing tables read as 'not materialized'."""

import json
import math

import duckdb
import pandas as pd

from reflection_assets.commands.console import StageLine
from reflection_assets.commands.report import build_report, render_markdown, write_report


def _warehouse(path):
    conn = duckdb.connect(str(path))
    outcomes = pd.DataFrame(
        {
            "outcome": ["reflected", "parse_failed", "parse_failed"],
            "error": ["", "missing_answer_marker", "missing_answer_marker: no [End]"],
        }
    )
    conn.register("o", outcomes)
    conn.execute("CREATE TABLE instruction_reflections AS SELECT * FROM o")
    selection = pd.DataFrame(
        {
            "instruction_choice": ["original", "reflected", "original"],
            "response_choice": ["reflected", "original", "original"],
            "passes_filter": [True, True, False],
            "selected": [True, False, False],
        }
    )
    conn.register("s", selection)
    conn.execute("CREATE TABLE selected_dataset AS SELECT * FROM s")
    conn.register("a", pd.DataFrame({"arm": ["selective", "random", "random"]}))
    conn.execute("CREATE TABLE arm_datasets AS SELECT * FROM a")
    training = pd.DataFrame(
        {
            "arm": ["selective", "full"],
            "status": ["trained", "skipped"],
            "rows_trained": [1, 0],
            "first_loss": [2.5, math.nan],
            "final_loss": [1.5, math.nan],
            "train_seconds": [3.0, 0.0],
            "skipped_reason": ["", "arm has 0 rows"],
        }
    )
    conn.register("t", training)
    conn.execute("CREATE TABLE lora_checkpoint AS SELECT * FROM t")
    return conn


def test_report_sections_from_a_warehouse(tmp_path):
    conn = _warehouse(tmp_path / "w.duckdb")
    report = build_report(conn, [StageLine("raw_instructions", "demo", 1.5, (("accepted", 3),))], 12.0, {"rows": 3})
    assert report["teacher"]["instruction_reflections"] == {
        "rows": 3,
        "outcomes": {"parse_failed": 2, "reflected": 1},
        "top_reasons": {"missing_answer_marker": 2},
    }
    assert report["rows_selected"] == 1
    assert {(d["instruction_choice"], d["response_choice"]): d["selected"] for d in report["decisions"]}[
        ("original", "reflected")
    ] == 1
    assert report["arms"] == {"random": 2, "selective": 1}
    assert report["training"][1]["first_loss"] is None and report["training"][1]["skipped_reason"] == "arm has 0 rows"
    assert "ablation" not in report
    text = render_markdown(report)
    assert "## Ablation\n\nNot materialized (no arm was evaluated)." in text
    assert "`response_reflections`" not in text  # a table that does not exist is not invented
    paths = write_report(report, tmp_path / "reports" / "x")
    assert json.loads(paths["json"].read_text())["arms"]["random"] == 2
    assert paths["markdown"].read_text().startswith("# Selective Reflection-Tuning run")
