"""The rest of the graph, through `ablation_report`, on one dataset partition whose `raw_instructions`
is already materialized: in this process, on a given instance (e.g. the one `dagster dev` serves), with
a scripted teacher and a tiny student, so training and evaluation take seconds, not the bundled
model's minutes. Three arms: `selective`, its reference `reflected_all`, and the control `full`, each with two
seeds (the fewest that let the report tell a method from a training run)."""

from __future__ import annotations

import dagster as dg

from reflection_assets.defs.definitions import ASSET_MODULES
from reflection_assets.defs.deployment import build_resources
from reflection_assets.defs.partitions import SEEDS, arm_key
from reflection_assets.evaluation.suites import GENERATED_SUITES
from reflection_assets.teacher.prompts import BETTER_ANSWER, END, NEW_ANSWER, NEW_INSTRUCTION
from resources.student import StudentModel
from resources.teacher_scripted import CannedReply, ScriptedTeacher

AFTER_INGEST = ["raw_ifd_scores", "instruction_reflections", "instruction_ifd_scores", "response_reflections",
                "response_scores"]
ARMS = ("selective", "reflected_all", "full")
RUN_SEEDS = ("0", "1")
# A few rows: every answer eligible and two thirds of them selected, so each arm has rows to train on.
SELECTION = {"extension_keep_lost_answers": True, "max_ifd": 1e9, "max_rifd": 1e9,
             "extension_budget_fraction": 0.67}
TRAINING = {"rank": 4, "alpha": 8, "dropout": 0.0, "epochs": 2, "batch_size": 1, "learning_rate": 5e-3,
            "max_length": 128, "min_rows": 1}
EVALUATION = {"items_per_suite": 3, "max_new_tokens": dict.fromkeys(GENERATED_SUITES, 8), "lm_eval": False}


def scripted_teacher(subjects: list[str]) -> ScriptedTeacher:
    """Per row (found by a word of its instruction), a stage-1 rewrite and a better answer."""
    replies = []
    for i, subject in enumerate(subjects):
        replies += [
            CannedReply(match=[subject, NEW_INSTRUCTION],
                        reply=f"Review: short.\n{NEW_INSTRUCTION}\nExplain {subject} step by step.\n{END}\n"
                              f"{NEW_ANSWER}\nA fuller answer about {subject}. {i}\n{END}"),
            CannedReply(match=[subject, BETTER_ANSWER],
                        reply=f"Review: terse.\n{BETTER_ANSWER}\nA better answer about {subject}. {i}\n{END}"),
        ]
    return ScriptedTeacher(name="report-graph", replies=replies)


def materialize_through_the_report(instance: dg.DagsterInstance, partition: str, subjects: list[str],
                                   student: str) -> None:
    assets = dg.load_assets_from_modules(ASSET_MODULES)
    checks = dg.load_asset_checks_from_modules(ASSET_MODULES)
    resources = {**build_resources(), "teacher": scripted_teacher(subjects), "student": StudentModel(model=student)}
    instance.add_dynamic_partitions(SEEDS, list(RUN_SEEDS))

    def run(selection: list[str], partition_key=None, ops: dict | None = None) -> None:
        result = dg.materialize(
            [*assets, *checks], selection=selection, partition_key=partition_key, instance=instance,
            resources=resources, run_config={"ops": {op: {"config": c} for op, c in (ops or {}).items()}},
            raise_on_error=False,
        )
        assert result.success, [e.message for e in result.all_events if e.is_failure]

    run(AFTER_INGEST, partition)
    run(["selected_dataset"], ops={"selected_dataset": {**SELECTION, "datasets": [partition]}})
    for arm in ARMS:
        for seed in RUN_SEEDS:
            run(["arm_datasets", "lora_checkpoint"], arm_key(arm, seed), {"lora_checkpoint": TRAINING})
    run(["eval_scores", "ablation_report"], ops={"eval_scores": EVALUATION, "ablation_report": {"resamples": 200}})
