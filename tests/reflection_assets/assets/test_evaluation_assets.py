"""eval_scores and ablation_report materialized on a real Dagster instance, DuckDB file and MLflow store.

`lora_checkpoint` and `arm_datasets` are stood in by test-only assets that write the contract
tables for adapters made here with PEFT on a tiny model (non-zero B, so each adapter matters).
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
from dagster_duckdb_pandas import DuckDBPandasIOManager

from reflection_assets.assets.evaluation import METHOD_CHECK, ablation_report, eval_scores
from reflection_assets.demo_data import DEMO_EVAL_PATH
from reflection_assets.evaluation.report import REPORT_COLUMNS
from reflection_assets.evaluation.runner import SCORE_COLUMNS
from reflection_assets.evaluation.suites import heldout_items
from reflection_assets.partitions import arm_partitions
from resources.student import StudentModel
from resources.teacher_local import TransformersTeacher
from resources.tracking import MlflowTracking
from resources.warehouse import Warehouse

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
    @dg.asset(name="arm_datasets", partitions_def=arm_partitions, metadata={"partition_expr": "arm"})
    def arm_datasets(context) -> pd.DataFrame:
        arm = context.partition_key
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
        return pd.DataFrame(rows)

    @dg.asset(name="lora_checkpoint", partitions_def=arm_partitions, metadata={"partition_expr": "arm"})
    def lora_checkpoint(context) -> pd.DataFrame:
        arm = context.partition_key
        trained = arm in TRAINED_ARMS
        return pd.DataFrame(
            [
                {
                    "arm": arm,
                    "status": "trained" if trained else "skipped",
                    "skipped_reason": "" if trained else "no rows",
                    "checkpoint_key": f"key-{arm}",
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
        "io_manager": DuckDBPandasIOManager(database=str(database), schema="main"),
        "warehouse": Warehouse(database=str(database)),
        "mlflow": MlflowTracking(),
        "student": StudentModel(model=str(root / "base")),
        "teacher": TransformersTeacher(model_ref=str(root / "base")),
    }


RUN_CONFIG = {
    "ops": {
        "eval_scores": {"config": {"items_per_suite": 3, "max_new_tokens": 8}},
        "ablation_report": {"config": {"resamples": 200}},
    }
}


def test_eval_scores_and_ablation_report(tiny_checkpoints, tmp_path, dagster_instance):
    database = tmp_path / "warehouse.duckdb"
    stand_ins = stand_in_assets(tiny_checkpoints)
    assets = [*stand_ins, eval_scores, ablation_report]
    for arm in ("selective", "random", "ifd_topk"):
        assert dg.materialize(
            stand_ins, partition_key=arm, instance=dagster_instance, resources=resources(tiny_checkpoints, database)
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
    assert set(scores["suite"]) == {"heldout_nll", "arithmetic", "ifeval", "gsm8k", "judge", "lm_eval_arithmetic"}
    assert not scores.duplicated(["model", "suite", "item_id", "metric"]).any()
    assert set(scores.loc[scores["suite"] == "judge", "model"]) == {"selective", "random"}
    assert set(scores.loc[scores["suite"] == "judge", "value"]) <= {-1.0, 0.0, 1.0}
    per_model = scores.groupby("model").size()
    assert per_model["selective"] == per_model["random"]
    # The leaked question is flagged for every model, in both suites that ask it (held-out NLL and
    # GSM8K), and nothing else is.
    leaked = scores[scores["contaminated"]]
    assert all(text.startswith(LEAKED.instruction) for text in leaked["instruction"])
    assert set(leaked["suite"]) == {"heldout_nll", "gsm8k"} and len(leaked) == 2 * 3

    materialization = dagster_instance.get_latest_materialization_event(
        dg.AssetKey("eval_scores")
    ).asset_materialization
    meta = materialization.metadata
    assert meta["arms_skipped"].value == {"ifd_topk": "skipped in training: no rows"}
    assert meta["generated"].value > 0 and meta["generated_cached"].value == 0

    report = first.output_for_node("ablation_report")
    assert list(report.columns) == REPORT_COLUMNS
    assert set(report["model"]) == {"base", "selective", "random"}
    nll = report[(report["suite"] == "heldout_nll")].set_index("model")
    assert nll.loc["base", "n"] == len(heldout_items(DEMO_EVAL_PATH)) - 1  # the contaminated item is left out
    assert nll.loc["selective", "verdict_vs_base"] in ("better", "worse", "no evidence either way")
    assert nll.loc["selective", "verdict_vs_random"] != "" and nll.loc["random", "verdict_vs_random"] == ""
    assert nll.loc["base", "verdict_vs_base"] == ""
    report_meta = dagster_instance.get_latest_materialization_event(
        dg.AssetKey("ablation_report")
    ).asset_materialization.metadata
    assert "| selective | heldout_nll | nll |" in report_meta["table"].value
    assert report_meta["intervals"].value.startswith("![")
    check = first.get_asset_check_evaluations()[0]
    assert check.check_name == METHOD_CHECK and check.severity == dg.AssetCheckSeverity.WARN

    # A re-run costs nothing: every output comes from the cache, and the numbers are the same.
    second = run()
    again = dagster_instance.get_latest_materialization_event(dg.AssetKey("eval_scores")).asset_materialization.metadata
    assert again["generated"].value == 0 and again["nll_scored"].value == 0 and again["judged"].value == 0
    pd.testing.assert_frame_equal(second.output_for_node("eval_scores"), scores)
    pd.testing.assert_frame_equal(second.output_for_node("ablation_report"), report)
