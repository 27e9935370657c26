"""The demo's training parts: which arms train, and the closing note read from the lora_checkpoint table."""

import argparse
import math

import duckdb
import pandas as pd

from reflection_assets.commands.demo import arms_run_config, training_note


def test_only_the_listed_arms_train():
    args = argparse.Namespace(train_arms="selective, random")
    assert arms_run_config(args, "selective") == {"ops": {"lora_checkpoint": {"config": {"enabled": True}}}}
    assert arms_run_config(args, "full")["ops"]["lora_checkpoint"]["config"]["enabled"] is False


def test_closing_note_gives_losses_and_times(tmp_path):
    database = tmp_path / "w.duckdb"
    frame = pd.DataFrame(
        [
            {
                "arm": "random",
                "status": "trained",
                "rows_trained": 6,
                "first_loss": 2.5,
                "final_loss": 1.25,
                "train_seconds": 41.0,
                "skipped_reason": "",
            },
            {
                "arm": "full",
                "status": "skipped",
                "rows_trained": 0,
                "first_loss": math.nan,
                "final_loss": math.nan,
                "train_seconds": 0.0,
                "skipped_reason": "training disabled",
            },
        ]
    )
    with duckdb.connect(str(database)) as conn:
        conn.register("frame", frame)
        conn.execute("CREATE TABLE lora_checkpoint AS SELECT * FROM frame")
    note = training_note(str(database))
    assert "random         trained    6 rows  loss 2.500 -> 1.250  41s" in note
    assert "full           skipped: training disabled" in note
