"""The console summary reads stage lines back from a real run in a real instance."""

import math

import dagster as dg
import pandas as pd

from reflection_assets.commands.console import (
    HEADLINES,
    NOTES,
    SILENT_ASSETS,
    StageLine,
    console_run_config,
    markdown_table,
    stage_lines,
)
from tests.support.console_keys import assert_console_reads_written_keys


def test_stage_lines_from_a_real_run(dagster_instance):
    from reflection_assets.defs.assets.ingest import raw_instructions
    from reflection_assets.defs.deployment import build_resources
    from reflection_assets.defs.partitions import DATASETS
    from reflection_assets.demo_data import DEMO_PARTITION

    dagster_instance.add_dynamic_partitions(DATASETS, [DEMO_PARTITION])
    result = dg.materialize(
        [raw_instructions],
        instance=dagster_instance,
        partition_key=DEMO_PARTITION,
        resources=build_resources(),
        run_config=console_run_config(None, verbose=False),
    )
    assert result.success
    lines = stage_lines(dagster_instance, result.run_id)
    assert [line.asset for line in lines] == ["raw_instructions"]  # rejected_rows is folded into it
    line = lines[0]
    assert line.partition == DEMO_PARTITION and line.seconds > 0
    assert dict(line.numbers) == {
        "accepted": 68, "rejected": 0, "near-duplicates removed": 0, "teacher calls saved": 0
    }
    assert line.render().startswith("  raw_instructions[demo]")
    written = result.asset_materializations_for_node("raw_instructions")[0].metadata
    assert_console_reads_written_keys("raw_instructions", written)


def test_every_stage_the_console_knows_is_an_asset_of_the_graph():
    from reflection_assets.defs.definitions import defs

    assets = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert set(HEADLINES) | set(NOTES) | SILENT_ASSETS <= assets


def test_the_teacher_and_scoring_lines_read_keys_their_counts_have():
    """These stages' counts come from pure functions; fed every outcome and choice there is (a real run
    writes only those its rows took), they give every key the asset can write. `stage_result` adds rows."""
    from reflection_assets.defs.assets.common import score_summary
    from reflection_assets.defs.assets.scoring import choice_counts
    from reflection_assets.scoring.statuses import OK
    from reflection_assets.selection.columns import ORIGINAL
    from reflection_assets.teacher.outcomes import OUTCOMES, REFLECTED
    from reflection_assets.teacher.stats import RunStats

    stats = RunStats("instruction", "http", "teacher", "v1", outcomes={outcome: 1 for outcome in OUTCOMES})
    for asset in ("instruction_reflections", "response_reflections"):
        assert_console_reads_written_keys(asset, {"rows": 1, **stats.metadata()})
    scores = pd.DataFrame({"ifd_ppl": [0.5], "ifd_status": [OK], "rifd_ppl": [0.7], "rifd_status": [OK]})
    assert_console_reads_written_keys("raw_ifd_scores", {"rows": 1, **score_summary(scores)})
    for asset, stage in (("instruction_ifd_scores", "instruction"), ("response_scores", "response")):
        choices = pd.DataFrame({f"{stage}_choice": [REFLECTED, ORIGINAL], f"{stage}_reason": ["a", "b"]})
        assert_console_reads_written_keys(asset, {"rows": 2, **choice_counts(choices, stage)})


def test_render_hides_nan_and_chains_losses():
    line = StageLine("lora_checkpoint", "selective", 61.2, (("rows", 20), ("loss", 2.5), ("->", 1.25), ("x", math.nan)))
    assert line.render().endswith("rows 20, loss 2.500 -> 1.250")
    # a run too short for a trend has one mean (no first window): it reads as the loss, not as "-> 1.717"
    numbers = (("rows", 68), ("loss", math.nan), ("->", 1.717), ("mean per", "run"))
    short = StageLine("lora_checkpoint", "full", 9.0, numbers)
    assert short.render().endswith("rows 68, loss 1.717, mean per run")


def test_console_config_keeps_run_config_and_quiets_logger():
    config = console_run_config({"ops": {"a": {"config": {"x": 1}}}}, verbose=False)
    assert config["ops"] == {"a": {"config": {"x": 1}}}
    assert config["loggers"]["console"]["config"]["log_level"] == "CRITICAL"
    assert markdown_table([{"a": 1.0, "b": "x"}], ["a", "b"]).splitlines()[2].split("|")[1:3] == [" 1.000 ", " x   "]


def test_the_docs_list_every_run_parameter_as_the_code_declares_it():
    from pathlib import Path

    from reflection_assets.commands.config_docs import config_classes, config_markdown, render_generated

    page = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
    assert config_markdown() in render_generated(page.read_text(), "configuration.md")
    assert sum(len(cls.model_fields) for _, cls in config_classes()) == config_markdown().count("\n") - 1


def test_stage_watcher_prints_each_stage_once_as_it_finishes(dagster_instance):
    from dagster._core.utils import make_new_run_id

    from reflection_assets.commands.driver import StageWatcher
    from reflection_assets.defs.assets.ingest import raw_instructions
    from reflection_assets.defs.deployment import build_resources
    from reflection_assets.defs.partitions import DATASETS
    from reflection_assets.demo_data import DEMO_PARTITION

    dagster_instance.add_dynamic_partitions(DATASETS, [DEMO_PARTITION])
    job = dg.Definitions(assets=[raw_instructions], resources=build_resources()).resolve_implicit_global_asset_job_def()
    printed: list[str] = []
    run_id = make_new_run_id()
    with StageWatcher(dagster_instance, run_id, printed.append, every_s=0.05) as watcher:
        result = job.execute_in_process(instance=dagster_instance, partition_key=DEMO_PARTITION, run_id=run_id,
                                        run_config=console_run_config(None, verbose=False))
    assert result.success and result.run_id == run_id
    assert len(printed) == 1 and printed[0].startswith("  raw_instructions[demo]")
    assert [line.render() for line in watcher.printed] == printed


def test_a_failed_step_is_named_with_the_user_codes_own_error(dagster_instance):
    from reflection_assets.commands.driver import failure_message

    @dg.asset
    def broken() -> None:
        raise ValueError("the eval file has no rows")

    result = dg.materialize([broken], instance=dagster_instance, raise_on_error=False)
    assert not result.success
    assert failure_message(result) == "broken: ValueError: the eval file has no rows"
