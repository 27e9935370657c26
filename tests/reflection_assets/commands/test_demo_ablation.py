"""The demo ends with the ablation table (values, intervals, verdicts), or says plainly why there is none."""

import pandas as pd

from reflection_assets.commands.demo import result_tables
from reflection_assets.database import connect
from reflection_assets.evaluation.report import ablation_table


def test_the_demo_ends_with_the_ablation_table(tmp_path):
    database = tmp_path / "warehouse.duckdb"
    with connect(database) as conn:
        conn.execute("CREATE TABLE other (x INTEGER)")
        assert "Not materialized (no arm was evaluated)." in "\n".join(result_tables(conn))

    scores = pd.DataFrame(
        [
            {"model": m, "suite": "heldout_nll", "metric": "nll", "item_id": f"i{k}", "value": v + k}
            for m, v in (("base", 2.0), ("selective", 1.5), ("random", 2.0))
            for k in range(5)
        ]
    )
    report = ablation_table(scores, resamples=100)
    with connect(database) as conn:
        conn.register("report_frame", report)
        conn.execute("CREATE TABLE ablation_report AS SELECT * FROM report_frame")
        text = "\n".join(result_tables(conn))
    assert "| selective | heldout_nll | nll | 5 | 3.500 | -0.500 [-0.500, -0.500] | better |" in text
    assert "positive control not run" in text
