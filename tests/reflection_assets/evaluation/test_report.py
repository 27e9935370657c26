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
from reflection_assets.evaluation.significance import BETTER, NO_EVIDENCE, TOO_FEW, TOO_FEW_RUNS, WORSE

N = 20
NOISE = np.random.default_rng(0).normal(scale=0.05, size=N)
RUN_SHIFTS = (-0.01, 0.01)  # each arm's two training runs, shifted as a whole


def rows(model, suite, metric, values, seed=0):
    return [
        {"model": model, "suite": suite, "metric": metric, "item_id": f"i{k}", "value": float(v), "seed": seed}
        for k, v in enumerate(values)
    ]


def trained(model, values, seeds=2, suite="heldout_nll", metric="nll", run_shifts=RUN_SHIFTS):
    """Every seed of an arm: the same item values, each seed shifted as a whole (one seed: no shift)."""
    shifts = run_shifts if seeds > 1 else (0.0,)
    out = []
    for seed, shift in enumerate(shifts[:seeds]):
        out += rows(model, suite, metric, [v + shift for v in values], seed)
    return out


def scores(selective_shift: float, full_shift: float, n: int = N, seeds: int = 2) -> pd.DataFrame:
    base = [2.0 + 0.1 * k for k in range(n)]
    data = rows("base", "heldout_nll", "nll", base)
    data += trained("selective", [v + selective_shift + e for v, e in zip(base, NOISE)], seeds)
    data += trained("random", [v + e for v, e in zip(base, NOISE[::-1])], seeds)
    data += trained("reflected_all", [v + 0.01 * e for v, e in zip(base, NOISE)], seeds)
    data += trained("full", [v + full_shift + 0.1 * e for v, e in zip(base, NOISE)], seeds)
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
    third = data[(data["model"] == "selective") & (data["seed"] == 1)].assign(seed=2)
    third["value"] += 0.1
    table = comparison_table(pd.concat([data, third]), arms={"selective": ArmFacts(12, 3)})
    primary = table.iloc[0]
    two = comparison_table(data).iloc[0]
    # Seeds 0 and 1 sit at -0.01 and +0.01 around the arm; the third at +0.11.
    assert primary["delta"] == pytest.approx(two["delta"] + 0.11 / 3)
    assert primary["model_sd_over_seeds"] == pytest.approx(np.std([-0.01, 0.01, 0.11], ddof=1), abs=1e-9)
    assert primary["model_between_sd"] == pytest.approx(primary["model_sd_over_seeds"], rel=1e-6)  # no item noise
    assert len(primary["model_seed_values"].split(", ")) == 3
    assert (primary["model_rows"], primary["model_seeds"]) == (12, 3)


def test_a_judge_that_flips_with_the_order_is_uninformative():
    data = scores(-0.3, -0.5)
    judged = trained("selective", [1] * 12 + [0] * 8, suite="judge", metric="judge_score", run_shifts=(0, 0))
    flips = trained("selective", [0] * 12 + [1] * 8, suite="judge", metric="position_flip", run_shifts=(0, 0))
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
    assert "| primary | selective | reflected_all | heldout_nll/nll | 20 | 2 / 2 |" in markdown_table(table)
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


def test_one_seed_per_arm_is_too_few_runs_and_the_report_says_how_to_fix_it():
    table = comparison_table(scores(-0.3, -0.5, seeds=1))
    assert set(table["verdict"]) == {TOO_FEW_RUNS}
    assert (table["run_df"] == 0).all() and table["p_adjusted"].iloc[2:].isna().all()
    # The items-only test of these adapters still reads the difference, labelled as such.
    assert table.iloc[0]["p_items"] < 0.01
    lines = headline(table)
    assert lines[0].startswith("NO VERDICT ACROSS TRAINING RUNS")
    assert lines[1].startswith("Primary: too few runs: selective vs reflected_all")
    assert "train each arm with 2 seeds or more" in lines[2]


def test_a_difference_no_larger_than_the_run_spread_is_no_verdict_however_many_items_agree():
    # Each arm's two runs sit 0.04 apart; selective's mean is 0.02 below reflected_all's on every item alike:
    # the items say "different" (p_items tiny), the runs say it is the size of a re-run.
    base = [2.0 + 0.1 * k for k in range(40)]
    noise = np.random.default_rng(3).normal(scale=0.001, size=(2, 40))
    data = rows("base", "heldout_nll", "nll", base)
    for arm, shift in (("selective", -0.02), ("reflected_all", 0.0)):
        for seed, run in enumerate((-0.02, 0.02)):
            data += rows(arm, "heldout_nll", "nll", np.add(base, shift + run) + noise[seed], seed)
    primary = comparison_table(pd.DataFrame(data)).iloc[0]
    assert primary["p_items"] < 1e-3
    assert primary["verdict"] == NO_EVIDENCE
    assert primary["run_sd"] == pytest.approx(np.std([-0.02, 0.02], ddof=1), rel=0.05)
    assert primary["seeds_needed"] > 2
    assert "would need about" in headline(comparison_table(pd.DataFrame(data)))[1]


def test_the_spread_between_runs_is_a_table_of_its_own():
    text = "\n".join(report_lines(comparison_table(scores(-0.3, -0.5))))
    assert "Between training runs on heldout_nll/nll" in text
    assert "| selective | 2 | " in text and "| full | 2 | " in text


def test_item_level_verdicts_are_what_the_items_only_test_says():
    from reflection_assets.evaluation.report import item_level_verdicts

    table = comparison_table(scores(-0.3, -0.5, seeds=1))
    old = item_level_verdicts(table)
    assert old.iloc[0] == BETTER and table.iloc[0]["verdict"] == TOO_FEW_RUNS
