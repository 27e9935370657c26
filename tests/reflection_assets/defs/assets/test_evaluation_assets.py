"""eval_scores and ablation_report materialized on a real Dagster instance, DuckDB file and MLflow store.

`lora_checkpoint` and `arm_datasets` are stood in by test-only assets that write the contract
tables for adapters made here with PEFT on a tiny model (non-zero B, so each adapter matters).
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from reflection_assets.defs.assets.evaluation import CONTROL_CHECK, METHOD_CHECK, ablation_report, eval_scores
from reflection_assets.defs.partitions import ARM_PARTITION_EXPR, SEEDS, arm_and_seed, arm_key, arm_partitions
from reflection_assets.demo_data import DEMO_EVAL_PATH
from reflection_assets.evaluation.report import COMPARISON_COLUMNS
from reflection_assets.evaluation.runner import SCORE_COLUMNS
from reflection_assets.evaluation.suites import GENERATED_SUITES, heldout_items
from resources.judge import JudgeModel
from resources.student import StudentModel
from resources.teacher_local import TransformersTeacher
from resources.tracking import MlflowTracking
from resources.warehouse import Warehouse
from resources.warehouse_io import WarehouseIOManager
from tests.support.console_keys import assert_console_reads_written_keys

SHORT_ANSWERS = dict.fromkeys(GENERATED_SUITES, 8)  # tokens per generated suite: fast, every answer cut

TRAINED_ARMS = {"selective": 11, "random": 12}
LEAKED = heldout_items(DEMO_EVAL_PATH)[0]  # the selective arm's data copies this eval item


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """A tiny base model folder and one saved LoRA adapter per trained arm."""
    import torch
    from peft import get_peft_model

    from tests.reflection_assets.evaluation.conftest import lora_config
    from tests.support.tiny_lm import tiny_model, tiny_tokenizer

    root = tmp_path_factory.mktemp("tiny")
    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    for arm, seed in TRAINED_ARMS.items():
        base = tiny_model(tokenizer)  # seeds torch itself: seed the adapter after it
        torch.manual_seed(seed)
        get_peft_model(base, lora_config()).save_pretrained(root / arm)
    return root


def stand_in_assets(root):
    @dg.asset(name="arm_datasets", partitions_def=arm_partitions, metadata={"partition_expr": ARM_PARTITION_EXPR})
    def arm_datasets(context) -> pd.DataFrame:
        arm, seed = arm_and_seed(context.partition_key)
        rows = [
            {
                "arm": arm,
                "row_id": f"{arm}-1",
                "instruction": "Name a colour.",
                "input": "",
                "output": "Blue.",
                "source": "raw",
            }
        ]
        if arm == "selective":
            rows.append(
                {
                    "arm": arm,
                    "row_id": "leak",
                    "instruction": LEAKED.instruction,
                    "input": "",
                    "output": LEAKED.reference,
                    "source": "reflected",
                }
            )
        return pd.DataFrame(rows).assign(seed=str(seed))

    @dg.asset(name="lora_checkpoint", partitions_def=arm_partitions, metadata={"partition_expr": ARM_PARTITION_EXPR})
    def lora_checkpoint(context) -> pd.DataFrame:
        arm, seed = arm_and_seed(context.partition_key)
        trained = arm in TRAINED_ARMS
        return pd.DataFrame(
            [
                {
                    "arm": arm,
                    "seed": str(seed),
                    "status": "trained" if trained else "skipped",
                    "skipped_reason": "" if trained else "no rows",
                    "checkpoint_key": f"key-{arm}-{seed}",
                    "adapter_path": str(root / arm) if trained else "",
                    "base_model": str(root / "base"),
                    "base_fingerprint": "tiny",
                    "rows_given": 2,
                    "rows_trained": 2 if trained else 0,
                    "first_loss": 5.0 if trained else float("nan"),
                    "final_loss": 4.0 if trained else float("nan"),
                    "train_seconds": 1.0,
                    "mlflow_run_id": "",
                }
            ]
        )

    return [arm_datasets, lora_checkpoint]


def resources(root, database):
    return {
        "io_manager": WarehouseIOManager(database=str(database), schema="main"),
        "warehouse": Warehouse(database=str(database)),
        "mlflow": MlflowTracking(),
        "student": StudentModel(model=str(root / "base")),
        "teacher": TransformersTeacher(model_ref=str(root / "base")),
        "judge": JudgeModel(),  # the teacher judges
    }


RUN_CONFIG = {
    "ops": {
        "eval_scores": {"config": {"items_per_suite": 3, "max_new_tokens": SHORT_ANSWERS}},
        "ablation_report": {"config": {"resamples": 200}},
    }
}


def test_eval_scores_and_ablation_report(tiny_checkpoints, tmp_path, dagster_instance):
    database = tmp_path / "warehouse.duckdb"
    stand_ins = stand_in_assets(tiny_checkpoints)
    assets = [*stand_ins, eval_scores, ablation_report]
    dagster_instance.add_dynamic_partitions(SEEDS, ["0", "1"])
    for arm, seed in (("selective", 0), ("selective", 1), ("random", 0), ("ifd_topk", 0)):
        assert dg.materialize(
            stand_ins,
            partition_key=arm_key(arm, seed),
            instance=dagster_instance,
            resources=resources(tiny_checkpoints, database),
        ).success

    def run():
        return dg.materialize(
            assets,
            selection=[eval_scores, ablation_report],
            instance=dagster_instance,
            resources=resources(tiny_checkpoints, database),
            run_config=RUN_CONFIG,
        )

    first = run()
    assert first.success
    scores = first.output_for_node("eval_scores")
    assert list(scores.columns) == SCORE_COLUMNS
    assert set(scores["model"]) == {"base", "selective", "random"}
    assert set(scores.loc[scores["model"] == "selective", "seed"]) == {0, 1}  # each seed is its own model
    assert set(scores["suite"]) == {"heldout_nll", "arithmetic", "ifeval", "gsm8k", "judge", "lm_eval_arithmetic"}
    assert not scores.duplicated(["model", "seed", "suite", "item_id", "metric"]).any()
    assert set(scores.loc[scores["suite"] == "judge", "model"]) == {"selective", "random"}
    judged = scores[scores["metric"] == "judge_score"]
    assert set(judged["value"]) <= {-1.0, 0.0, 1.0}
    assert set(scores.loc[scores["metric"] == "position_flip", "value"]) <= {0.0, 1.0}
    assert judged["judge"].str.endswith("(the teacher and the student's base model)").all()
    per_model = scores.groupby(["model", "seed"]).size()
    assert per_model[("selective", 0)] == per_model[("selective", 1)] == per_model[("random", 0)]
    # The leaked question is flagged for every model, in both suites that ask it (held-out NLL and
    # GSM8K), and nothing else is.
    leaked = scores[scores["contaminated"]]
    assert all(text.startswith(LEAKED.instruction) for text in leaked["instruction"])
    assert set(leaked["suite"]) == {"heldout_nll", "gsm8k"} and len(leaked) == 2 * 4  # base, 2 selective, random

    materialization = dagster_instance.get_latest_materialization_event(
        dg.AssetKey("eval_scores")
    ).asset_materialization
    meta = materialization.metadata
    assert meta["arms_skipped"].value == {"ifd_topk": "skipped in training: no rows"}
    assert meta["generated"].value > 0 and meta["generated_cached"].value == 0
    assert 0.0 <= meta["truncation_rate"].value <= 1.0 and set(meta["truncated_per_suite"].value) >= {"arithmetic"}
    assert meta["items_dropped_duplicate"].value == 0 and "share instructions" in meta["suite_overlap"].value
    assert_console_reads_written_keys("eval_scores", meta)

    report = first.output_for_node("ablation_report")
    assert list(report.columns) == COMPARISON_COLUMNS
    # No reflected_all was trained: the primary falls back to the base, and comes first.
    primary = report.iloc[0]
    assert (primary["role"], primary["model"], primary["reference"], primary["suite"]) == (
        "primary", "selective", "base", "heldout_nll"
    )
    assert primary["n"] == len(heldout_items(DEMO_EVAL_PATH)) - 1  # paired items; the contaminated one left out
    assert primary["model_seeds"] == 2 and primary["model_rows"] == 2
    pairs = set(zip(report["model"], report["reference"]))
    assert pairs == {("selective", "base"), ("random", "base"), ("selective", "random")}
    # Holm adjusts the secondaries that can be decided; too few items (the generated suites) leaves no p to adjust.
    secondary = report[report["role"] == "secondary"]
    tested = secondary.dropna(subset=["p_adjusted"])
    assert len(tested) and (tested["p_adjusted"] >= tested["p_value"]).all()
    untested = secondary.loc[secondary["p_adjusted"].isna(), "verdict"]
    assert set(untested) <= {"too few items", "judge position-biased: uninformative"}
    assert primary["run_df"] > 0 and primary["verdict"] != "too few runs"
    report_meta = dagster_instance.get_latest_materialization_event(
        dg.AssetKey("ablation_report")
    ).asset_materialization.metadata
    assert report_meta["headline"].value.startswith("Primary: ")
    assert "| primary | selective | base | heldout_nll/nll |" in report_meta["table"].value
    assert report_meta["intervals"].value.startswith("![")
    assert_console_reads_written_keys("ablation_report", report_meta)
    checks = {c.check_name: c for c in first.get_asset_check_evaluations()}
    assert set(checks) == {METHOD_CHECK, CONTROL_CHECK}
    assert all(c.severity == dg.AssetCheckSeverity.WARN for c in checks.values())
    assert not checks[CONTROL_CHECK].passed  # no `full` arm: the control did not run, and the check says so

    # A re-run costs nothing: every output comes from the cache, and the numbers are the same.
    second = run()
    again = dagster_instance.get_latest_materialization_event(dg.AssetKey("eval_scores")).asset_materialization.metadata
    assert again["generated"].value == 0 and again["nll_scored"].value == 0 and again["judged"].value == 0
    pd.testing.assert_frame_equal(second.output_for_node("eval_scores"), scores)
    pd.testing.assert_frame_equal(second.output_for_node("ablation_report"), report)
