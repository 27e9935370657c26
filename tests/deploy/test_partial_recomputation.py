"""Partial recomputation on the real code location's assets, counted from metadata and the event log.

1. Dataset A goes through the whole graph: teacher, student, selection, three trained arms (`full`,
   `selective`, `random`; the other two arms are not built), evaluation and the ablation report.
2. Dataset B is added: its per-dataset run calls the teacher and the student for B's rows only, and
   A's partition is not materialized at all. Selection onward then runs again: B's rows change every
   arm, so all three train again, and evaluation generates for the three new adapters only (the
   base's outputs come from the cache).
3. A selection setting changes: selection onward runs and nothing upstream does (no teacher call, no
   forward pass). `full` keeps its rows and reports `reused` with the same checkpoint key; the arms
   whose rows changed train again, and evaluation generates only for those adapters.

The teacher is scripted (exact, countable replies), the student a tiny random Llama (a model folder).
The judge is on: the scripted teacher's `choose` judges, and its verdicts are cached too.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import dagster as dg
import duckdb
import pytest

from reflection_assets.defs.definitions import ASSET_MODULES
from reflection_assets.defs.deployment import build_resources
from reflection_assets.defs.partitions import DATASETS, SEEDS, arm_key
from reflection_assets.evaluation.suites import GENERATED_SUITES, default_eval_file, heldout_items
from reflection_assets.ingest.registry import DatasetSource, register_source
from reflection_assets.paths import warehouse_path
from reflection_assets.teacher.prompts import BETTER_ANSWER, END, NEW_ANSWER, NEW_INSTRUCTION
from resources.student import StudentModel
from resources.teacher_scripted import CannedReply, ScriptedTeacher
from tests.support.training import sample_pairs

SHORT_ANSWERS = dict.fromkeys(GENERATED_SUITES, 8)  # tokens per generated suite: fast, every answer cut

pytestmark = pytest.mark.slow  # about a minute: nine trainings and three evaluations of a tiny model

ASSETS = dg.load_assets_from_modules(ASSET_MODULES)
CHECKS = dg.load_asset_checks_from_modules(ASSET_MODULES)
PER_DATASET = ["raw_instructions", "rejected_rows", "raw_ifd_scores", "instruction_reflections",
               "instruction_ifd_scores", "response_reflections", "response_scores"]
TEACHER_STAGES = ("instruction_reflections", "response_reflections")
SCORING = ("raw_ifd_scores", "instruction_ifd_scores", "response_scores")
ARMS = ("full", "selective", "random")
SELECTION_ONWARD = {"selected_dataset", "arm_datasets", "lora_checkpoint", "eval_scores", "ablation_report"}

# The tiny student is random: whether a reflected answer "wins" (lower r-IFD) is a coin toss, and the
# published rule selected none of A's rows. So every answer is eligible, the IFD filter is wide open,
# and the selection is sized by the budget extension (the highest-IFD rows): its size is exact.
SELECTION = {"extension_keep_lost_answers": True, "max_ifd": 1e9, "max_rifd": 1e9, "extension_budget_fraction": 0.5}
TRAINING = {"ops": {"lora_checkpoint": {"config": {
    "rank": 4, "alpha": 8, "dropout": 0.0, "epochs": 1, "batch_size": 2, "learning_rate": 5e-3,
    "max_length": 128, "min_rows": 2,
}}}}
ITEMS = 3
EVALUATION = {"ops": {"eval_scores": {"config": {"items_per_suite": ITEMS, "max_new_tokens": SHORT_ANSWERS,
                                                 "judge": True}},
                      "ablation_report": {"config": {"resamples": 200}}}}
GENERATIONS_PER_MODEL = ITEMS * len(GENERATED_SUITES)  # arithmetic, ifeval, gsm8k, judge: 3 items each
NLL_PER_MODEL = len(heldout_items(default_eval_file()))

# Twelve pairs in the tiny tokenizer's words, one topic each ("Explain light 0."): A has 8, B has 4.
PAIRS = sample_pairs(12)
DATASET_PAIRS = {"a": PAIRS[:8], "b": PAIRS[8:]}


def scripted_teacher() -> ScriptedTeacher:
    """Per row, a stage-1 rewrite and a better answer, matched by the row's topic and the stage's marker."""
    replies = []
    for i, pair in enumerate(PAIRS):
        topic = pair.instruction.split()[1]
        replies += [
            CannedReply(match=[f"Explain {topic} ", NEW_INSTRUCTION],
                        reply=f"Review: short.\n{NEW_INSTRUCTION}\nExplain {topic} {i} step by step.\n{END}\n"
                              f"{NEW_ANSWER}\nPlants use {topic} and water. {i}\n{END}"),
            CannedReply(match=[f"Explain {topic} ", BETTER_ANSWER],
                        reply=f"Review: terse.\n{BETTER_ANSWER}\nPlants use {topic}, light and air. {i}\n{END}"),
        ]
    return ScriptedTeacher(replies=replies)


def add_dataset(instance: dg.DagsterInstance, folder, key: str) -> None:
    path = folder / f"{key}.jsonl"
    path.write_text("".join(json.dumps({"instruction": p.instruction, "input": "", "output": p.output}) + "\n"
                            for p in DATASET_PAIRS[key]))
    register_source(warehouse_path(), key, DatasetSource(str(path)))
    instance.add_dynamic_partitions(DATASETS, [key])
    instance.add_dynamic_partitions(SEEDS, ["0"])


@dataclass
class Onward:
    """What one pass of selection onward did: its runs, the selection's and evaluation's numbers, each arm."""

    runs: list
    selection: dict
    rows: dict  # arm -> its rows (row_id, instruction, input, output)
    status: dict  # arm -> lora_checkpoint status
    key: dict  # arm -> checkpoint key
    eval: dict


class Graph:
    """Materializes parts of the graph on one instance, with the scripted teacher and the tiny student."""

    def __init__(self, instance: dg.DagsterInstance, student: str):
        self.instance = instance
        self.resources = {**build_resources(), "teacher": scripted_teacher(), "student": StudentModel(model=student)}

    def run(self, selection, partition=None, run_config=None) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            [*ASSETS, *CHECKS], selection=selection, partition_key=partition, instance=self.instance,
            resources=self.resources, run_config=run_config or {}, raise_on_error=False,
        )
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        return result

    def dataset(self, key: str) -> dg.ExecuteInProcessResult:
        return self.run(PER_DATASET, key)

    def selection_onward(self, **setting) -> Onward:
        """selected_dataset, then arm_datasets + lora_checkpoint per arm, then eval_scores + ablation_report."""
        selection = self.run(["selected_dataset"],
                             run_config={"ops": {"selected_dataset": {"config": {**SELECTION, **setting}}}})
        arms = {arm: self.run(["arm_datasets", "lora_checkpoint"], arm_key(arm), TRAINING) for arm in ARMS}
        evaluation = self.run(["eval_scores", "ablation_report"], run_config=EVALUATION)
        return Onward(
            runs=[selection, *arms.values(), evaluation],
            selection=values(selection, "selected_dataset"),
            rows={arm: rows_of(r.output_for_node("arm_datasets")) for arm, r in arms.items()},
            status={arm: values(r, "lora_checkpoint")["status"] for arm, r in arms.items()},
            key={arm: values(r, "lora_checkpoint")["checkpoint_key"] for arm, r in arms.items()},
            eval=values(evaluation, "eval_scores"),
        )


def values(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    """The metadata values of the run's one materialization of `asset`."""
    (materialization,) = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in materialization.metadata.items()}


def rows_of(frame) -> frozenset:
    return frozenset(frame[["row_id", "instruction", "input", "output"]].itertuples(index=False, name=None))


def materialized(instance: dg.DagsterInstance, *results) -> set[tuple[str, str | None]]:
    """(asset, partition) of every materialization the runs wrote to the instance's event log."""
    found = set()
    for result in results:
        for entry in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            m = entry.asset_materialization
            found.add((m.asset_key.to_user_string(), m.partition))
    return found


def upstream_history(instance: dg.DagsterInstance) -> Counter:
    """How often each per-dataset asset partition was ever materialized on the instance."""
    return Counter(
        (asset, record.asset_materialization.partition)
        for asset in PER_DATASET
        for record in instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    )


def teacher_calls(result) -> dict:
    return {stage: (values(result, stage)["calls_made"], values(result, stage)["calls_cached"])
            for stage in TEACHER_STAGES}


def tokens(result) -> dict:
    return {stage: values(result, stage)["tokens_computed"] for stage in SCORING}


def table_count(table: str) -> int:
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def assert_evaluated_only(onward: Onward, generated: int, cached: int) -> None:
    """`generated` models' outputs were made, `cached` models' came from the cache (1 + 3 arms in all)."""
    e = onward.eval
    assert e["models"] == 1 + len(ARMS)
    assert (e["generated"], e["generated_cached"]) == (generated * GENERATIONS_PER_MODEL,
                                                        cached * GENERATIONS_PER_MODEL), e
    assert (e["nll_scored"], e["nll_cached"]) == (generated * NLL_PER_MODEL, cached * NLL_PER_MODEL), e
    assert (e["lm_eval_runs"], e["lm_eval_cached"]) == (generated, cached), e
    # Verdicts are keyed by the two answers: an unchanged adapter's are all cached, a new one's may be
    # too when it happens to write what an earlier adapter wrote.
    assert e["judged"] + e["judged_cached"] == len(ARMS) * ITEMS and e["judged"] <= generated * ITEMS, e


def test_new_dataset_and_new_selection_setting_recompute_only_what_changed(dagster_instance, tiny_base, tmp_path):
    instance, graph = dagster_instance, Graph(dagster_instance, tiny_base)

    # 1. Dataset A through the whole graph: every call and forward pass is new.
    add_dataset(instance, tmp_path, "a")
    a = graph.dataset("a")
    assert materialized(instance, a) == {(asset, "a") for asset in PER_DATASET}
    assert teacher_calls(a) == {stage: (8, 0) for stage in TEACHER_STAGES}
    tokens_a = tokens(a)
    assert all(n > 0 for n in tokens_a.values()), tokens_a
    first = graph.selection_onward()
    assert first.selection["rows_selected"] == 4  # floor(0.5 * 8)
    assert {arm: len(rows) for arm, rows in first.rows.items()} == {"full": 8, "selective": 4, "random": 4}
    assert first.status == {arm: "trained" for arm in ARMS}
    assert_evaluated_only(first, generated=1 + len(ARMS), cached=0)

    # 2. Dataset B: the teacher and the student work on B's 4 rows only; A's partition is not touched.
    add_dataset(instance, tmp_path, "b")
    calls_before, sequences_before = table_count("llm_calls"), table_count("student_scores")
    b = graph.dataset("b")
    assert materialized(instance, b) == {(asset, "b") for asset in PER_DATASET}  # nothing of partition "a"
    assert teacher_calls(b) == {stage: (4, 0) for stage in TEACHER_STAGES}
    assert table_count("llm_calls") == calls_before + 2 * 4  # two stages, B's rows
    tokens_b = tokens(b)
    assert all(n > 0 for n in tokens_b.values()), tokens_b
    assert sum(tokens_b.values()) < sum(tokens_a.values())  # half the rows; A's scores were not recomputed
    assert table_count("student_scores") > sequences_before
    history = upstream_history(instance)
    assert {k: n for k, n in history.items() if k[1] == "a"} == {(asset, "a"): 1 for asset in PER_DATASET}

    # Selection onward sees both datasets: every arm's rows change, so all train again; the base is cached.
    second = graph.selection_onward()
    assert {asset for asset, _ in materialized(instance, *second.runs)} == SELECTION_ONWARD
    assert second.selection["rows_selected"] == 6 and second.selection["datasets_read"] == ["a", "b"]
    assert {arm: len(rows) for arm, rows in second.rows.items()} == {"full": 12, "selective": 6, "random": 6}
    assert all(second.rows[arm] != first.rows[arm] for arm in ARMS)
    assert second.status == {arm: "trained" for arm in ARMS}
    assert all(second.key[arm] != first.key[arm] for arm in ARMS)
    assert_evaluated_only(second, generated=len(ARMS), cached=1)

    # 3. A changed selection setting: a budget of a quarter keeps floor(0.25 * 12) = 3 rows instead of 6,
    # so the selective arm's rows change, and so do those of `random` (it is drawn at the selective size);
    # `full` (every accepted row) does not depend on the selection.
    upstream_before = upstream_history(instance)
    calls_before, sequences_before = table_count("llm_calls"), table_count("student_scores")
    third = graph.selection_onward(extension_budget_fraction=0.25)
    done = materialized(instance, *third.runs)
    assert done == {("selected_dataset", None), ("eval_scores", None), ("ablation_report", None),
                    *{(asset, f"{arm}|0") for asset in ("arm_datasets", "lora_checkpoint") for arm in ARMS}}
    assert not {asset for asset, _ in done} & set(PER_DATASET)  # nothing upstream ran
    assert upstream_history(instance) == upstream_before
    assert (third.selection["teacher_calls_made"], third.selection["tokens_computed"]) == (0, 0)
    assert (table_count("llm_calls"), table_count("student_scores")) == (calls_before, sequences_before)

    assert third.selection["rows_selected"] == 3
    assert third.rows["full"] == second.rows["full"]
    assert (third.status["full"], third.key["full"]) == ("reused", second.key["full"])
    for arm in ("selective", "random"):
        assert len(third.rows[arm]) == 3 and third.rows[arm] != second.rows[arm], arm
        assert third.status[arm] == "trained" and third.key[arm] not in (first.key[arm], second.key[arm]), arm
    # Base and `full` from the cache; generations, likelihoods and lm-eval runs for the two new adapters only.
    assert_evaluated_only(third, generated=2, cached=2)
