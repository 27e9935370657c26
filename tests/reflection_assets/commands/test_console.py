"""The console summary reads stage lines back from a real run in a real instance."""

import math

import dagster as dg

from reflection_assets.commands.console import StageLine, console_run_config, markdown_table, stage_lines


def test_stage_lines_from_a_real_run(dagster_instance):
    from reflection_assets.assets.ingest import raw_instructions
    from reflection_assets.demo_data import DEMO_PARTITION
    from reflection_assets.deployment import build_resources
    from reflection_assets.partitions import DATASETS

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
    assert dict(line.numbers) == {"accepted": 68, "rejected": 0}
    assert line.render().startswith("  raw_instructions[demo]")


def test_render_hides_nan_and_chains_losses():
    line = StageLine("lora_checkpoint", "selective", 61.2, (("rows", 20), ("loss", 2.5), ("->", 1.25), ("x", math.nan)))
    assert line.render().endswith("rows 20, loss 2.500, -> 1.250")


def test_console_config_keeps_run_config_and_quiets_logger():
    config = console_run_config({"ops": {"a": {"config": {"x": 1}}}}, verbose=False)
    assert config["ops"] == {"a": {"config": {"x": 1}}}
    assert config["loggers"]["console"]["config"]["log_level"] == "WARNING"
    assert markdown_table([{"a": 1.0, "b": "x"}], ["a", "b"]).splitlines()[2].split("|")[1:3] == [" 1.000 ", " x   "]
