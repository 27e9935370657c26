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
    assert "arm_datasets" not in steps[2].run_config["ops"]  # the demo's arms: the default eval file
    held = graph_steps("x", "selective", "selective", {}, arm={"eval_file": "held.jsonl"})
    assert held[2].run_config["ops"]["arm_datasets"] == {"config": {"eval_file": "held.jsonl"}}


def test_the_tour_trains_every_demo_arm_twice_on_one_step_budget_and_scores_every_suite():
    from reflection_assets.commands.demo import SIZES, teacher_stage
    from reflection_assets.commands.driver import graph_steps
    from reflection_assets.defs.assets.evaluation import EvalConfig
    from reflection_assets.defs.assets.reflection import ReflectionConfig
    from reflection_assets.defs.assets.training import LoraCheckpointConfig
    from reflection_assets.evaluation.runner import HELDOUT_NLL, build_items
    from reflection_assets.selection.columns import ARMS
    from reflection_assets.teacher.settings import ReflectionSettings

    tour = SIZES["tour"]
    steps = graph_steps("demo", ",".join(ARMS), ",".join(tour.train_arms), {}, seeds=tour.seeds,
                        training=tour.training, evaluation=tour.evaluation)
    arm_configs = {s.partition: s.run_config["ops"]["lora_checkpoint"]["config"] for s in steps if s.job == "arms_job"}
    assert {partition.split("|")[0] for partition in arm_configs} == set(ARMS)  # every arm partition built
    trained = {partition for partition, config in arm_configs.items() if config["enabled"]}
    assert trained == {f"{arm}|{seed}" for arm in ("selective", "reflected_all", "random", "full") for seed in "01"}
    # One step budget for every trained arm, `full` included (not 3 epochs over all 68 rows).
    assert tour.training["max_steps"] > 0
    assert {arm_configs[p]["max_steps"] for p in trained} == {tour.training["max_steps"]}
    LoraCheckpointConfig(**arm_configs["full|0"])  # a config the asset accepts

    items = build_items(EvalConfig(**tour.evaluation).settings("chat"))
    assert len(items[HELDOUT_NLL]) >= 30  # the primary endpoint: every held-out pair
    assert all(4 <= len(suite_items) <= 8 for suite, suite_items in items.items() if suite != HELDOUT_NLL), {
        suite: len(suite_items) for suite, suite_items in items.items()
    }
    # The teacher reflects every row (fewer leave the selection too small to train on) with a short critique;
    # `full` keeps the defaults.
    stage = teacher_stage(tour)
    assert stage["limit"] is None and stage["critique_tokens"] < ReflectionSettings().critique_tokens
    ReflectionConfig(**stage)  # a config the reflection assets accept
    assert teacher_stage(tour, 8, 3) == {**stage, "max_new_tokens": 8, "limit": 3}
    assert "critique_tokens" not in teacher_stage(SIZES["full"]) and SIZES["full"].evaluation is None
