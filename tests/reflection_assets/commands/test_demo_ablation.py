"""The demo ends with the ablation: the primary verdict first, the control, the direct comparisons,
read back from the warehouse; or says plainly why there is none."""

import pandas as pd

from reflection_assets.commands.demo import result_tables
from reflection_assets.database import connect
from reflection_assets.evaluation.report import comparison_table


def test_the_demo_ends_with_the_primary_verdict_then_the_tables(tmp_path):
    database = tmp_path / "warehouse.duckdb"
    with connect(database) as conn:
        conn.execute("CREATE TABLE other (x INTEGER)")
        assert "Not materialized (no arm was evaluated)." in "\n".join(result_tables(conn))

    scores = pd.DataFrame(
        [
            {"model": m, "seed": seed, "suite": "heldout_nll", "metric": "nll", "item_id": f"i{k}",
             "value": v + k + 0.01 * (k % 3) + (0.002 * (-1) ** seed if m != "base" else 0)}
            for m, v in (("base", 2.0), ("selective", 1.5), ("reflected_all", 2.0), ("full", 1.0))
            for seed in ((0, 1) if m != "base" else (0,))
            for k in range(12)
        ]
    )  # fmt: skip
    report = comparison_table(scores)
    with connect(database) as conn:
        conn.register("report_frame", report)
        conn.execute("CREATE TABLE ablation_report AS SELECT * FROM report_frame")
        text = "\n".join(result_tables(conn))
    lines = text.splitlines()
    first = lines.index("Ablation:") + 1
    assert lines[first].startswith("Primary: better: selective vs reflected_all on heldout_nll/nll (delta -0.500")
    assert lines[first + 1].startswith("Seeds: 2 per arm, between-run sd 0.003")
    assert lines[first + 2].startswith("Positive control: better: full vs base on heldout_nll/nll")
    assert "| primary | selective | reflected_all | heldout_nll/nll | 12 | 2 / 2 | 7.010 ± 0.003" in text
    assert "| secondary | selective | full | heldout_nll/nll | 12 |" in text


def test_an_ablation_table_from_before_the_test_over_runs_asks_for_a_rerun(tmp_path):
    database = tmp_path / "warehouse.duckdb"
    with connect(database) as conn:
        conn.execute("CREATE TABLE ablation_report AS SELECT 'selective' AS model, 'better' AS verdict_vs_base")
        text = "\n".join(result_tables(conn))
        conn.execute("DROP TABLE ablation_report")
        conn.execute("CREATE TABLE ablation_report AS SELECT 'primary' AS role, 'better' AS verdict, 0.01 AS p_value")
        items_only = "\n".join(result_tables(conn))
    assert "predates the report's test over training runs: materialize ablation_report again" in text
    assert "predates the report's test over training runs" in items_only
