"""The demo's training parts: which arms train, and the closing training table read from lora_checkpoint."""

import math

import duckdb
import pandas as pd

from reflection_assets.commands.demo import result_tables
from reflection_assets.commands.driver import arm_steps


def test_only_the_listed_arms_train_each_with_every_seed():
    steps = arm_steps("selective,random,full", "selective, random", seeds=2)
    assert [(s.job, s.partition) for s in steps] == [
        ("arms_job", "selective|0"), ("arms_job", "selective|1"), ("arms_job", "random|0"), ("arms_job", "random|1"),
        ("arms_job", "full|0"),  # not trained: its rows are built once, training skipped with the reason
    ]
    assert steps[0].run_config == {"ops": {"lora_checkpoint": {"config": {"enabled": True}}}}
    assert steps[4].run_config["ops"]["lora_checkpoint"]["config"]["enabled"] is False


def test_closing_tables_give_losses_times_and_skips(tmp_path):
    database = tmp_path / "w.duckdb"
    frame = pd.DataFrame(
        [
            {"arm": "random", "seed": "1", "status": "trained", "rows_trained": 6, "first_loss": 2.5,
             "final_loss": 1.25,
             "train_seconds": 41.0, "skipped_reason": ""},
            {"arm": "full", "seed": "0", "status": "skipped", "rows_trained": 0, "first_loss": math.nan,
             "final_loss": math.nan,
             "train_seconds": 0.0, "skipped_reason": "training disabled"},
        ]
    )
    with duckdb.connect(str(database)) as conn:
        conn.register("frame", frame)
        conn.execute("CREATE TABLE lora_checkpoint AS SELECT * FROM frame")
        text = "\n".join(result_tables(conn))
    assert "No selection was made" in text
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| random") or
            line.startswith("| full")]
    assert [c.strip() for c in rows[0]] == ["random", "1", "trained", "6", "2.500", "1.250", "41.000", ""]
    assert [c.strip() for c in rows[1]] == ["full", "0", "skipped", "0", "", "", "0.000", "training disabled"]


def test_the_graph_runs_in_order_with_the_teacher_stage_config():
    from reflection_assets.commands.driver import SMALL_ARM_TRAINING, graph_steps

    steps = graph_steps("demo", "selective,full", "selective", {"max_new_tokens": 8})
    assert [(s.job, s.partition) for s in steps] == [("dataset_job", "demo"), ("selection_job", None),
                                                     ("arms_job", "selective|0"), ("arms_job", "full|0"),
                                                     ("evaluation_job", None)]
    assert steps[1].run_config is None and steps[-1].run_config is None  # every partition, the default eval file
    scoped = graph_steps("x", "selective", "selective", {}, seeds=1, selection={"datasets": ["x"]},
                         evaluation={"eval_file": "held.jsonl"}, ingest={"near_duplicates_across_partitions": False})
    assert scoped[0].run_config["ops"]["raw_instructions"] == {"config": {"near_duplicates_across_partitions": False}}
    assert "raw_instructions" not in steps[0].run_config["ops"]  # the demo ingests with the defaults
    assert scoped[1].run_config == {"ops": {"selected_dataset": {"config": {"datasets": ["x"]}}}}
    assert scoped[-1].run_config == {"ops": {"eval_scores": {"config": {"eval_file": "held.jsonl"}}}}
    ops = steps[0].run_config["ops"]
    assert ops["instruction_reflections"] == ops["response_reflections"] == {"config": {"max_new_tokens": 8}}
    assert steps[2].run_config["ops"]["lora_checkpoint"]["config"] == {"enabled": True, **SMALL_ARM_TRAINING}
