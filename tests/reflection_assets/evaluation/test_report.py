import numpy as np
import pandas as pd
import pytest

from reflection_assets.evaluation.report import (
    COMPARISON_COLUMNS,
    CONTROL,
    JUDGE_BIASED,
    PRIMARY,
    SECONDARY,
    ArmFacts,
    ReportSettings,
    comparison_table,
    control_failed,
    headline,
    markdown_table,
    method_warnings,
    positive_control_note,
    report_lines,
    training_facts,
)
from reflection_assets.evaluation.significance import BETTER, NO_EVIDENCE, TOO_FEW, WORSE

N = 20
NOISE = np.random.default_rng(0).normal(scale=0.05, size=N)


def rows(model, suite, metric, values, seed=0):
    return [
        {"model": model, "suite": suite, "metric": metric, "item_id": f"i{k}", "value": float(v), "seed": seed}
        for k, v in enumerate(values)
    ]


def scores(selective_shift: float, full_shift: float, n: int = N) -> pd.DataFrame:
    base = [2.0 + 0.1 * k for k in range(n)]
    data = rows("base", "heldout_nll", "nll", base)
    data += rows("selective", "heldout_nll", "nll", [v + selective_shift + e for v, e in zip(base, NOISE)])
    data += rows("random", "heldout_nll", "nll", [v + e for v, e in zip(base, NOISE[::-1])])
    data += rows("reflected_all", "heldout_nll", "nll", [v + 0.01 * e for v, e in zip(base, NOISE)])
    data += rows("full", "heldout_nll", "nll", [v + full_shift + 0.1 * e for v, e in zip(base, NOISE)])
    return pd.DataFrame(data)


def row(table, model, reference, suite="heldout_nll"):
    found = table[(table["model"] == model) & (table["reference"] == reference) & (table["suite"] == suite)]
    assert len(found) == 1, (model, reference, suite)
    return found.iloc[0]


def test_the_primary_endpoint_comes_first_then_the_control_and_secondaries_are_holm_adjusted():
    table = comparison_table(scores(selective_shift=-0.3, full_shift=-0.5))
    assert list(table.columns) == COMPARISON_COLUMNS
    assert table.iloc[0]["role"] == PRIMARY and table.iloc[1]["role"] == CONTROL
    primary = table.iloc[0]
    assert (primary["model"], primary["reference"]) == ("selective", "reflected_all")
    assert primary["verdict"] == BETTER  # lower NLL is better
    assert primary["delta"] < 0 and primary["n"] == N
    assert table.iloc[1]["verdict"] == BETTER and not control_failed(table)
    secondary = table[table["role"] == SECONDARY]
    assert (secondary["p_adjusted"] >= secondary["p_value"]).all()
    # The method against every reference, directly, and every arm against the base.
    pairs = set(zip(table["model"], table["reference"]))
    assert {("selective", r) for r in ("base", "random", "reflected_all", "full")} <= pairs
    assert {("random", "base"), ("reflected_all", "base"), ("full", "base")} <= pairs
    assert row(table, "random", "base")["verdict"] == NO_EVIDENCE
    assert method_warnings(table) == []
    assert headline(table)[0].startswith("Primary: better: selective vs reflected_all on heldout_nll/nll")


def test_a_worse_method_warns_on_the_primary_only_and_a_failed_control_leads_the_report():
    table = comparison_table(scores(selective_shift=0.3, full_shift=0.0))
    assert table.iloc[0]["verdict"] == WORSE
    assert len(method_warnings(table)) == 1 and method_warnings(table)[0].startswith("primary: worse")
    assert control_failed(table)
    assert positive_control_note(table).startswith("positive control failed")
    assert headline(table)[0].startswith("THE EVALUATION COULD NOT DETECT FINE-TUNING ITSELF")
    # Secondary "worse" verdicts do not raise the warning.
    assert row(table, "selective", "base")["verdict"] == WORSE


def test_the_primary_reference_is_configurable_and_falls_back_to_the_base():
    table = comparison_table(scores(-0.3, -0.5), ReportSettings(primary_reference="random"))
    assert (table.iloc[0]["model"], table.iloc[0]["reference"]) == ("selective", "random")
    no_reflected = scores(-0.3, -0.5)
    no_reflected = no_reflected[no_reflected["model"] != "reflected_all"]
    assert comparison_table(no_reflected).iloc[0]["reference"] == "base"


def test_too_few_paired_items_is_its_own_verdict_and_n_is_the_paired_count():
    data = scores(-0.3, -0.5, n=8)
    table = comparison_table(data)
    assert set(table["verdict"]) == {TOO_FEW}
    # n counts items both models answered, not the model's rows.
    partial = scores(-0.3, -0.5)
    partial = partial[~((partial["model"] == "reflected_all") & (partial["item_id"].isin(["i0", "i1", "i2"])))]
    assert comparison_table(partial).iloc[0]["n"] == N - 3


def test_items_are_averaged_over_seeds_and_the_seed_spread_is_shown():
    data = scores(-0.3, -0.5)
    second = data[data["model"] == "selective"].assign(seed=1)
    second["value"] += 0.1
    table = comparison_table(pd.concat([data, second]), arms={"selective": ArmFacts(12, 2)})
    primary = table.iloc[0]
    single = comparison_table(data).iloc[0]
    assert primary["delta"] == pytest.approx(single["delta"] + 0.05)
    assert primary["model_sd_over_seeds"] == pytest.approx(np.std([0, 0.1], ddof=1), abs=1e-9)
    assert len(primary["model_seed_values"].split(", ")) == 2
    assert (primary["model_rows"], primary["model_seeds"]) == (12, 2)


def test_a_judge_that_flips_with_the_order_is_uninformative():
    data = scores(-0.3, -0.5)
    judged = rows("selective", "judge", "judge_score", [1] * 12 + [0] * 8)
    flips = rows("selective", "judge", "position_flip", [0] * 12 + [1] * 8)
    for r in judged + flips:
        r["judge"] = "in-process bundled (the teacher and the student's base model)"
    table = comparison_table(pd.concat([data, pd.DataFrame(judged + flips)]), judge="bundled")
    judge_row = row(table, "selective", "base", suite="judge")
    assert judge_row["judge_flip_share"] == pytest.approx(0.4)
    assert judge_row["verdict"] == BETTER  # 12 wins of 20, 40 % flips: under the threshold
    biased = comparison_table(
        pd.concat([data, pd.DataFrame(judged + flips)]), ReportSettings(judge_flip_threshold=0.3), judge="bundled"
    )
    assert row(biased, "selective", "base", suite="judge")["verdict"] == JUDGE_BIASED
    assert any(line.startswith("Judge: bundled; verdicts that flipped between the two orders: 40%") for line in
               headline(table))
    assert "position_flip" not in set(table["metric"])


def test_the_report_reads_as_text_and_names_the_missing_control():
    data = scores(-0.3, -0.5)
    table = comparison_table(data[data["model"] != "full"])
    text = "\n".join(report_lines(table))
    assert "Positive control: not run" in text
    assert "| primary | selective | reflected_all | heldout_nll/nll | 20 |" in markdown_table(table)
    assert comparison_table(pd.DataFrame(columns=["model", "suite", "metric", "item_id", "value"])).empty


def test_training_facts_count_seeds_and_rows_trained():
    checkpoints = pd.DataFrame(
        {
            "arm": ["selective", "selective", "random", "full"],
            "status": ["trained", "reused", "trained", "skipped"],
            "rows_trained": [12, 12, 12, 0],
        }
    )
    assert training_facts(checkpoints) == {"selective": ArmFacts(12, 2), "random": ArmFacts(12, 1)}


def test_the_table_is_reproducible():
    data = scores(-0.01, -0.5)
    pd.testing.assert_frame_equal(comparison_table(data), comparison_table(data))
