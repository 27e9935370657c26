"""The whole graph on a tiny partition: with the real embedded teacher and student, and with a scripted teacher."""

import json

import dagster as dg
import duckdb
import pytest

from reflection_assets.defs.definitions import ASSET_MODULES
from reflection_assets.defs.deployment import build_resources
from reflection_assets.defs.partitions import DATASETS, SEEDS, arm_key
from reflection_assets.paths import warehouse_path
from reflection_assets.selection.lineage import LINEAGE_SQL
from reflection_assets.teacher.prompts import BETTER_ANSWER, END, NEW_ANSWER, NEW_INSTRUCTION
from resources.teacher_scripted import CannedReply, ScriptedTeacher
from tests.support.console_keys import assert_console_reads_written_keys

pytestmark = pytest.mark.slow

ASSETS = dg.load_assets_from_modules(ASSET_MODULES)
CHECKS = dg.load_asset_checks_from_modules(ASSET_MODULES)
PER_DATASET = ["raw_instructions", "rejected_rows", "raw_ifd_scores", "instruction_reflections",
               "instruction_ifd_scores", "response_reflections", "response_scores"]
TEACHER = {"max_new_tokens": 12, "critique_tokens": 8}
RUN_CONFIG = {"ops": {"instruction_reflections": {"config": TEACHER}, "response_reflections": {"config": TEACHER}}}

ROWS = [
    {"instruction": "What is 7 times 6?", "input": "", "output": "42"},
    {
        "instruction": "Summarise the text in one sentence.",
        "input": "Cats sleep a lot. They nap in the sun.",
        "output": "Cats nap.",
    },
    {"instruction": "Name the capital of France.", "output": "Paris is the capital of France."},
    {"instruction": "Name the capital of France.", "output": "Paris is the capital of France."},  # duplicate
]


def run(instance, selection, partition=None, run_config=None):
    return dg.materialize(
        [*ASSETS, *CHECKS], selection=selection, partition_key=partition, instance=instance,
        resources=build_resources(), run_config=run_config or {}, raise_on_error=False,
    )


def metadata(result, asset):
    return result.asset_materializations_for_node(asset)[0].metadata


@pytest.fixture
def tiny_source(tmp_path):
    path = tmp_path / "tiny.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    return path


def test_whole_graph_accounts_for_every_row_and_reruns_for_free(dagster_instance, tiny_source):
    from reflection_assets.ingest.registry import DatasetSource, register_source

    register_source(warehouse_path(), "tiny", DatasetSource(str(tiny_source)))
    dagster_instance.add_dynamic_partitions(DATASETS, ["tiny"])
    dagster_instance.add_dynamic_partitions(SEEDS, ["0"])

    first = run(dagster_instance, PER_DATASET, "tiny", RUN_CONFIG)
    assert first.success
    checks = first.get_asset_check_evaluations()
    assert len(checks) == 9 and all(c.passed for c in checks), [
        (c.asset_key, c.check_name, c.metadata) for c in checks if not c.passed
    ]
    assert metadata(first, "instruction_reflections")["calls_made"].value == 3

    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        for table in PER_DATASET[2:]:
            assert conn.execute(f"SELECT count(*), count(DISTINCT row_id) FROM {table}").fetchone() == (3, 3), table
        outcomes = conn.execute("SELECT outcome FROM instruction_reflections").fetchall()
        assert {o for (o,) in outcomes} <= {"reflected", "parse_failed", "teacher_error", "skipped"}
        assert conn.execute("SELECT reason FROM rejected_rows").fetchall() == [("duplicate",)]

    # Re-materializing the same input: every teacher call and every forward pass is a cache hit.
    second = run(dagster_instance, PER_DATASET, "tiny", RUN_CONFIG)
    assert second.success
    for asset in ("instruction_reflections", "response_reflections"):
        meta = metadata(second, asset)
        assert meta["calls_made"].value == 0 and meta["calls_cached"].value == 3, asset
    for asset in ("raw_ifd_scores", "instruction_ifd_scores", "response_scores"):
        assert metadata(second, asset)["tokens_computed"].value == 0, asset

    selection = run(dagster_instance, ["selected_dataset"])
    meta = metadata(selection, "selected_dataset")
    assert meta["rows_scored"].value == 3
    for arm in ("full", "random"):
        result = run(dagster_instance, ["arm_datasets"], arm_key(arm))
        assert result.success
        assert metadata(result, "arm_datasets")["rows"].value == (3 if arm == "full" else meta["rows_selected"].value)
        skipped = arm != "full" and meta["rows_selected"].value == 0  # an arm sized to an empty selection
        absent = {"shortfall"} if skipped else {"skipped_reason"}
        assert_console_reads_written_keys("arm_datasets", metadata(result, "arm_datasets"), absent=absent)

    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        raw_id = conn.execute("SELECT row_id FROM raw_instructions LIMIT 1").fetchone()[0]
        steps = {s for (s,) in conn.execute(f"SELECT stage FROM ({LINEAGE_SQL})", [raw_id]).fetchall()}
    assert {"raw", "instruction_reflection", "response_score", "selection", "arm"} <= steps


def scripted_teacher(france_fails: bool) -> ScriptedTeacher:
    """Exact teacher outcomes per row: reflected, parse failure, and an injected failure for France."""
    france = (
        CannedReply(match=["capital of France"], error="HTTP 503: injected")
        if france_fails
        else CannedReply(
            match=["capital of France", NEW_INSTRUCTION],
            reply=f"{NEW_INSTRUCTION}\nName the capital of France and one fact about it.\n{END}\n"
            f"{NEW_ANSWER}\nParis; it lies on the Seine.\n{END}",
        )
    )
    return ScriptedTeacher(
        replies=[
            france,
            CannedReply(
                match=["7 times 6", NEW_INSTRUCTION],
                reply=f"Review: too easy.\n{NEW_INSTRUCTION}\nWhat is 7 times 6? Show the steps.\n{END}\n"
                f"{NEW_ANSWER}\n7 x 6 = 42.\n{END}",
            ),
            CannedReply(match=["Cats sleep", NEW_INSTRUCTION], reply="I would rather not use the markers."),
            CannedReply(
                match=[BETTER_ANSWER], reply=f"Review: short.\n{BETTER_ANSWER}\nA complete, careful answer.\n{END}"
            ),
            CannedReply(match=["capital of France", BETTER_ANSWER], reply=f"{BETTER_ANSWER}\nParis.\n{END}"),
        ]
    )


def outcomes(stage: str) -> dict[str, str]:
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        rows = conn.execute(
            f"SELECT r.instruction, s.outcome FROM {stage}_reflections s JOIN raw_instructions r USING (row_id)"
        ).fetchall()
    return {instruction.split()[0]: outcome for instruction, outcome in rows}


def test_scripted_teacher_gives_exact_outcomes_and_failed_calls_are_retried(dagster_instance, tiny_source):
    from reflection_assets.ingest.registry import DatasetSource, register_source

    register_source(warehouse_path(), "tiny", DatasetSource(str(tiny_source)))
    dagster_instance.add_dynamic_partitions(DATASETS, ["tiny"])

    def run_scripted(france_fails: bool):
        return dg.materialize(
            [*ASSETS, *CHECKS], selection=PER_DATASET, partition_key="tiny", instance=dagster_instance,
            resources={**build_resources(), "teacher": scripted_teacher(france_fails)}, raise_on_error=False,
        )

    first = run_scripted(france_fails=True)
    assert first.success and all(c.passed for c in first.get_asset_check_evaluations())
    assert outcomes("instruction") == {"What": "reflected", "Summarise": "parse_failed", "Name": "teacher_error"}
    assert outcomes("response") == {"What": "reflected", "Summarise": "reflected", "Name": "teacher_error"}
    assert metadata(first, "instruction_reflections")["calls_made"].value == 3

    # The failure is gone: only the failed calls are made again, the rest come from llm_calls.
    second = run_scripted(france_fails=False)
    assert second.success
    meta = metadata(second, "instruction_reflections")
    assert meta["calls_made"].value == 1 and meta["calls_cached"].value == 2
    assert outcomes("instruction")["Name"] == "reflected" and outcomes("response")["Name"] == "reflected"
