"""selected_dataset on hand-made stage-2 decisions: published filter, extensions, Reflection-70B option."""

import json

import dagster as dg
import duckdb
import pandas as pd
import pytest

from reflection_assets.defs.definitions import ASSET_MODULES
from reflection_assets.defs.deployment import build_resources
from reflection_assets.defs.partitions import DATASETS, SEEDS, arm_key
from reflection_assets.paths import warehouse_path
from reflection_assets.reflection70b import validate_reflection_format
from resources.teacher_scripted import CannedReply, ScriptedTeacher
from tests.support.console_keys import assert_console_reads_written_keys

ASSETS = dg.load_assets_from_modules(ASSET_MODULES)
CHECKS = dg.load_asset_checks_from_modules(ASSET_MODULES)

# (instruction_choice, response_choice, final_ifd, final_rifd)
ROWS = {
    "a": ("reflected", "reflected", 0.8, 0.7),  # passes
    "b": ("original", "reflected", 0.6, 0.9),  # passes
    "c": ("reflected", "original", 0.5, 0.5),  # answer lost: only the extension keeps it
    "d": ("original", "reflected", 1.0, 0.5),  # IFD exactly 1 fails
}


def _decisions() -> pd.DataFrame:
    return pd.DataFrame([
        {"dataset": "p", "row_id": rid, "instruction_choice": q, "instruction_reason": "x", "response_choice": a,
         "response_reason": "y", "final_instruction": f"What is {i} plus {i}?", "final_input": "",
         "final_output": f"{2 * i}", "final_ifd": ifd, "final_rifd": rifd, "final_ifd_status": "ok",
         "final_rifd_status": "ok"}
        for i, (rid, (q, a, ifd, rifd)) in enumerate(ROWS.items(), start=1)
    ])


@pytest.fixture
def stage_two_tables(dagster_instance):
    path = warehouse_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    decisions = _decisions()
    raw = pd.DataFrame({"dataset": "p", "row_id": list(ROWS), "ifd_ppl": [0.5] * 4, "ifd_status": "ok",
                        "rifd_ppl": [0.5] * 4, "rifd_status": "ok"})
    with duckdb.connect(str(path)) as conn:
        conn.register("decisions", decisions)
        conn.register("raw", raw)
        conn.execute("CREATE TABLE response_scores AS SELECT * FROM decisions")
        conn.execute("CREATE TABLE raw_ifd_scores AS SELECT * FROM raw")
    dagster_instance.add_dynamic_partitions(DATASETS, ["p"])
    return dagster_instance


# The scripted teacher rewrites row a in the format and answers row b without the tags (kept plain).
FORMAT_TEACHER = ScriptedTeacher(
    replies=[
        CannedReply(
            match=["What is 1 plus 1?"], reply="<thinking>\nOne and one make two.\n</thinking>\n<output>\n2\n</output>"
        ),
        CannedReply(match=["What is 2 plus 2?"], reply="It is 4."),
    ]
)


def _select(instance, **config):
    result = dg.materialize(
        [*ASSETS, *CHECKS], selection=["selected_dataset"], instance=instance,
        resources={**build_resources(), "teacher": FORMAT_TEACHER},
        run_config={"ops": {"selected_dataset": {"config": config}}},
    )
    meta = result.asset_materializations_for_node("selected_dataset")[0].metadata
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        table = conn.execute("SELECT * FROM selected_dataset ORDER BY row_id").df()
    return result, meta, table


def test_published_rule_then_extension_reuse_nothing(stage_two_tables):
    result, meta, table = _select(stage_two_tables)
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    assert table.loc[table["selected"], "row_id"].tolist() == ["a", "b"]
    assert meta["teacher_calls_made"].value == 0 and meta["tokens_computed"].value == 0

    _, meta, table = _select(stage_two_tables, extension_keep_lost_answers=True)
    assert table.loc[table["selected"], "row_id"].tolist() == ["a", "b", "c"]
    assert meta["teacher_calls_made"].value == 0 and meta["tokens_computed"].value == 0


@pytest.mark.slow
def test_reflection_format_option_rewrites_validates_scores_and_caches(stage_two_tables):
    _, meta, table = _select(stage_two_tables, response_style="reflection", format_max_new_tokens=24)
    chosen = table[table["selected"]]
    assert meta["format_rows"].value == 2 and meta["teacher_calls_made"].value == 2
    for row in chosen.itertuples():
        assert row.plain_output == str(2 * (list(ROWS).index(row.row_id) + 1))
        if row.reflection_format == "ok":
            assert validate_reflection_format(row.final_output) == (True, "ok")
            assert row.formatted_ifd_status in ("ok", "prompt_too_long") or row.formatted_ifd_status.startswith("error")
        else:
            assert row.reflection_format.startswith("kept_plain:") and row.final_output == row.plain_output
    assert (table.loc[~table["selected"], "reflection_format"] == "not_selected").all()
    by_id = chosen.set_index("row_id")
    assert by_id.loc["a", "reflection_format"] == "ok" and by_id.loc["a", "final_output"].endswith(
        "<output>\n2\n</output>"
    )
    assert by_id.loc["b", "reflection_format"].startswith("kept_plain:parse_failed:")
    assert meta["format_ok"].value == 1 and meta["format_kept_plain"].value == 1

    # Same rows again: the rewrites and their scores come from the caches.
    _, again, _ = _select(stage_two_tables, response_style="reflection", format_max_new_tokens=24)
    assert again["teacher_calls_made"].value == 0 and again["tokens_computed"].value == 0


def _stage_two(instance, decisions: pd.DataFrame):
    """The stage-2 table `decisions`, plus the per-dataset tables the arms also read (one row each)."""
    path = warehouse_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = pd.DataFrame({"dataset": "p", "row_id": decisions["row_id"].drop_duplicates()})
    raw = ids.assign(ifd_ppl=0.5, ifd_status="ok", rifd_ppl=0.5, rifd_status="ok")  # noqa: F841 - read by DuckDB by name
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE response_scores AS SELECT * FROM decisions")
        conn.execute("CREATE TABLE raw_ifd_scores AS SELECT * FROM raw")
        for table in ("raw_instructions", "instruction_reflections", "instruction_ifd_scores", "response_reflections"):
            conn.execute(f"CREATE TABLE {table} AS SELECT * FROM ids")
    instance.add_dynamic_partitions(DATASETS, ["p"])


def _materialize(instance, selection, partition=None, run_config=None):
    return dg.materialize([*ASSETS, *CHECKS], selection=selection, partition_key=partition, instance=instance,
                          resources=build_resources(), raise_on_error=False, run_config=run_config)


def test_empty_selection_is_a_reasoned_result_and_the_arms_skip_with_it(dagster_instance):
    decisions = _decisions()
    decisions["response_choice"] = "original"  # the student kept every original answer
    _stage_two(dagster_instance, decisions)

    result = _materialize(dagster_instance, ["selected_dataset"])
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["selected_dataset_well_formed"].passed
    assert not checks["selected_dataset_not_empty"].passed
    assert checks["selected_dataset_not_empty"].severity == dg.AssetCheckSeverity.WARN
    meta = result.asset_materializations_for_node("selected_dataset")[0].metadata
    assert meta["rows_selected"].value == 0
    assert meta["empty_reason"].value == "0 of 4 rows were selected (answer_lost 4)"
    assert meta["q_reflected__a_lost__rows"].value == 2 and meta["q_original__a_lost__rows"].value == 2
    assert_console_reads_written_keys("selected_dataset", meta)

    dagster_instance.add_dynamic_partitions(SEEDS, ["0"])
    for arm in ("selective", "random"):  # the arms sized to the selection
        arm_run = _materialize(dagster_instance, ["arm_datasets"], partition=arm_key(arm))
        assert arm_run.success
        arm_meta = arm_run.asset_materializations_for_node("arm_datasets")[0].metadata
        assert arm_meta["rows"].value == 0
        assert arm_meta["skipped_reason"].value == "0 of 4 rows were selected (answer_lost 4)"
        assert_console_reads_written_keys("arm_datasets", arm_meta, absent={"shortfall"})
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM arm_datasets").fetchone() == (0,)
        assert "arm" in [c for (c, *_) in conn.execute("DESCRIBE arm_datasets").fetchall()]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda frame: pd.concat([frame, frame.iloc[:1]]), "malformed selection: 1 duplicated row_id(s)"),
        (lambda frame: frame.assign(final_output=["4", "", "6", "8"]), "1 selected row(s) with an empty final_output"),
        # A table without a column the rules read is a code or version fault, not the user's: a KeyError that a
        # retry policy may retry and that keeps its traceback, not a no-retry Failure.
        (
            lambda frame: frame.drop(columns=["final_rifd_status"]),
            "KeyError: \"decisions lacks columns ['final_rifd_status']",
        ),
    ],
)
def test_malformed_selection_fails_in_the_asset_and_is_not_stored(dagster_instance, damage, message):
    _stage_two(dagster_instance, damage(_decisions()))
    result = _materialize(dagster_instance, ["selected_dataset"])
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert message in failure.event_specific_data.error.to_string()
    # A user's data or config problem is a dg.Failure (not retried); a code fault keeps its exception.
    assert (failure.event_specific_data.user_failure_data is None) == message.startswith("KeyError")
    assert result.asset_materializations_for_node("selected_dataset") == []
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        tables = conn.execute("SELECT table_name FROM information_schema.tables").fetchall()
    assert ("selected_dataset",) not in tables


BENCHMARK_QUESTION = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."


def test_a_planted_benchmark_row_leaves_the_exports_named_counted_and_the_card_agrees(
    dagster_instance, tmp_path, monkeypatch
):
    from datasets import load_dataset, load_from_disk

    from reflection_assets.paths import exports_dir
    from reflection_assets.selection.card import read_card_counts

    bench = tmp_path / "gsm8k_test.jsonl"
    bench.write_text(json.dumps({"id": "gsm8k-7", "question": BENCHMARK_QUESTION, "answer": "72"}) + "\n")
    monkeypatch.setenv("REFLECTION_DECONTAMINATE", str(bench))
    decisions = _decisions()
    decisions.loc[decisions["row_id"] == "b", "final_instruction"] = "Solve: " + BENCHMARK_QUESTION  # planted
    _stage_two(dagster_instance, decisions)

    result = _materialize(dagster_instance, ["selected_dataset"])
    assert result.success
    check = {c.check_name: c for c in result.get_asset_check_evaluations()}["export_decontaminated"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["per_benchmark"].value == {"gsm8k_test.jsonl": 1}
    meta = result.asset_materializations_for_node("selected_dataset")[0].metadata
    assert meta["rows_selected"].value == 2 and meta["rows_decontaminated"].value == 1
    assert meta["rows_exported"].value == 1
    assert meta["decontaminated_rows"].value == [
        {"row_id": "b", "benchmark": "gsm8k_test.jsonl", "item": "gsm8k-7", "shared_ngrams": 8}
    ]
    assert_console_reads_written_keys("selected_dataset", meta)
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        table = conn.execute("SELECT * FROM selected_dataset ORDER BY row_id").df()
    # The table keeps the decision and says why the row left the export; the files leave it out.
    assert table.set_index("row_id")["contamination"].to_dict() == {"a": "", "b": "gsm8k_test.jsonl: gsm8k-7",
                                                                    "c": "", "d": ""}
    exported = table[table["selected"] & (table["contamination"] == "")]

    out = exports_dir() / "selected"
    for shape in ("alpaca", "chat"):
        loaded = load_dataset("parquet", data_files=str(out / f"selected.{shape}.parquet"), split="train")
        assert loaded["row_id"] == exported["row_id"].tolist() == ["a"]
    assert load_dataset("parquet", data_files=str(out / "selected.chat.parquet"), split="train")[0]["messages"][-1] == {
        "role": "assistant", "content": "2"}
    assert load_from_disk(str(out / "selected.hf"))["row_id"] == ["a"]
    assert load_dataset(str(out), "alpaca", split="train")["instruction"] == ["What is 1 plus 1?"]  # the card's configs

    card = read_card_counts(out / "README.md")
    assert card["rows"] == len(exported) == 1
    assert card["rows_per_source"] == exported.groupby("dataset").size().to_dict() == {"p": 1}
    assert card["rows_decontaminated"] == int((table["contamination"] != "").sum()) == 1
    assert card["decontamination_per_benchmark"] == {"gsm8k_test.jsonl": 1}
    assert card["decision_counts"]["total_selected"] == int(table["selected"].sum())
    assert card["decision_counts"]["q_original__a_won__selected"] == 1
    text = (out / "README.md").read_text()
    assert "gsm8k-7" in text and "No ablation report existed" in text and meta["mlflow_run"].value in text

    # The selective arm's table, what lora_checkpoint trains on, never holds the row.
    dagster_instance.add_dynamic_partitions(SEEDS, ["0"])
    arm_run = _materialize(dagster_instance, ["arm_datasets"], partition=arm_key("selective"))
    arm_meta = arm_run.asset_materializations_for_node("arm_datasets")[0].metadata
    assert arm_meta["rows"].value == 1 and arm_meta["rows_decontaminated"].value == 1
    assert not {c.check_name: c for c in arm_run.get_asset_check_evaluations()}["export_decontaminated"].passed
    assert_console_reads_written_keys("arm_datasets", arm_meta, absent={"skipped_reason"})
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        assert conn.execute("SELECT row_id FROM arm_datasets").fetchall() == [("a",)]
    arm_card = read_card_counts(exports_dir() / "arms" / "selective" / "seed0" / "README.md")
    assert arm_card["rows"] == 1 and arm_card["rows_decontaminated"] == 1


def test_the_exports_are_decontaminated_against_the_eval_file_the_run_names(dagster_instance, tmp_path, monkeypatch):
    """An experiment's held-out split reaches the exports through run config, not the process environment."""
    monkeypatch.delenv("REFLECTION_EVAL_FILE", raising=False)
    held = tmp_path / "held.jsonl"
    held.write_text(json.dumps({"instruction": BENCHMARK_QUESTION, "output": "72"}) + "\n")
    decisions = _decisions()
    decisions.loc[decisions["row_id"] == "b", "final_instruction"] = "Solve: " + BENCHMARK_QUESTION
    _stage_two(dagster_instance, decisions)

    default = _materialize(dagster_instance, ["selected_dataset"])  # the demo's eval set: nothing shared
    assert default.asset_materializations_for_node("selected_dataset")[0].metadata["rows_decontaminated"].value == 0
    named = {"ops": {"selected_dataset": {"config": {"eval_file": str(held)}}}}
    result = _materialize(dagster_instance, ["selected_dataset"], run_config=named)
    meta = result.asset_materializations_for_node("selected_dataset")[0].metadata
    assert meta["rows_decontaminated"].value == 1 and meta["rows_exported"].value == 1

    dagster_instance.add_dynamic_partitions(SEEDS, ["0"])
    arm_config = {"ops": {"arm_datasets": {"config": {"eval_file": str(held)}}}}
    arm_run = _materialize(dagster_instance, ["arm_datasets"], partition=arm_key("selective"), run_config=arm_config)
    assert arm_run.asset_materializations_for_node("arm_datasets")[0].metadata["rows_decontaminated"].value == 1


def test_an_unreadable_benchmark_file_fails_the_export_naming_it(dagster_instance, monkeypatch):
    monkeypatch.setenv("REFLECTION_DECONTAMINATE", "nowhere/benchmark.parquet")
    _stage_two(dagster_instance, _decisions())
    result = _materialize(dagster_instance, ["selected_dataset"])
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.event_specific_data.user_failure_data is not None  # a dg.Failure: the user's, not retried
    message = failure.event_specific_data.error.message
    assert "REFLECTION_DECONTAMINATE: nowhere/benchmark.parquet: no such file" in message
