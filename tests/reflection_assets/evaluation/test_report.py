import pandas as pd
import pytest

from reflection_assets.evaluation.report import (
    REPORT_COLUMNS,
    ablation_table,
    markdown_table,
    method_warnings,
    positive_control_note,
)


def rows(model, suite, metric, values):
    return [
        {"model": model, "suite": suite, "metric": metric, "item_id": f"i{k}", "value": v} for k, v in enumerate(values)
    ]


def scores(selective_nll_shift: float, full_nll_shift: float) -> pd.DataFrame:
    base_nll = [2.0 + 0.1 * k for k in range(20)]
    data = rows("base", "heldout_nll", "nll", base_nll)
    data += rows("selective", "heldout_nll", "nll", [v + selective_nll_shift for v in base_nll])
    data += rows("random", "heldout_nll", "nll", base_nll)
    data += rows("full", "heldout_nll", "nll", [v + full_nll_shift for v in base_nll])
    data += rows("selective", "judge", "judge_score", [1, 1, 0, 1, 1, 1, 0, 1])
    data += rows("random", "judge", "judge_score", [0, 0, 0, 0, 0, 0, 0, 0])
    return pd.DataFrame(data)


def test_verdicts_read_the_metric_direction():
    table = ablation_table(scores(selective_nll_shift=-0.3, full_nll_shift=-0.5)).set_index(["model", "suite"])
    assert list(table.reset_index().columns) == REPORT_COLUMNS
    assert table.loc[("selective", "heldout_nll"), "verdict_vs_base"] == "better"  # lower NLL
    selective = table.loc[("selective", "heldout_nll")]
    assert selective["ci_low"] == pytest.approx(-0.3) and selective["ci_high"] == pytest.approx(-0.3)
    assert table.loc[("selective", "heldout_nll"), "verdict_vs_random"] == "better"
    assert table.loc[("random", "heldout_nll"), "verdict_vs_base"] == "no evidence either way"
    assert table.loc[("base", "heldout_nll"), "verdict_vs_base"] == ""
    # The judge already compares with the base: its interval is the verdicts' against 0.
    assert table.loc[("selective", "judge"), "value"] == 0.75
    assert table.loc[("selective", "judge"), "verdict_vs_base"] == "better"
    assert table.loc[("selective", "judge"), "verdict_vs_random"] == "better"
    assert positive_control_note(table.reset_index()).startswith("positive control ok")
    assert method_warnings(table.reset_index()) == []


def test_a_worse_method_and_a_failed_control_are_reported():
    table = ablation_table(scores(selective_nll_shift=0.3, full_nll_shift=0.0))
    assert method_warnings(table) == [
        "heldout_nll/nll: selective is worse than base",
        "heldout_nll/nll: selective is worse than random",
    ]
    assert positive_control_note(table).startswith("positive control failed")
    text = markdown_table(table)
    assert "| selective | heldout_nll | nll | 20 | " in text and "| worse |" in text


def test_the_table_is_reproducible():
    data = scores(-0.01, -0.5)
    data.loc[data["model"] == "selective", "value"] += [
        0.05 * ((k * 7) % 3 - 1) for k in range((data["model"] == "selective").sum())
    ]
    pd.testing.assert_frame_equal(ablation_table(data, seed=1), ablation_table(data, seed=1))
