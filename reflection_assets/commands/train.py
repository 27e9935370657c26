"""`reflection-tuning train`: a data file or an arm -> a LoRA adapter folder, without Dagster.

It calls the same `train_lora` as the `lora_checkpoint` asset, so a run here and a run there with
the same rows and settings share their checkpoint (key = base model, rows, settings, libraries).
Several GPUs: `accelerate launch --config_file deploy/accelerate/fsdp2.yaml -m reflection_assets.cli train ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from reflection_assets.dataclass_args import add_dataclass_arguments, dataclass_from_args
from reflection_assets.training.settings import LoraSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data",
        type=Path,
        metavar="PAIRS.jsonl",
        help="rows with instruction, optional input/system/history/id, output",
    )
    source.add_argument(
        "--arm", metavar="ARM", help="an arm already built in the warehouse (arm_datasets), e.g. selective"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="DIR",
        help="checkpoint root (default: data/checkpoints); the adapter lands in DIR/NAME/KEY/adapter",
    )
    parser.add_argument(
        "--name", default=None, help="folder name under the root (default: the arm, or the data file's stem)"
    )
    parser.add_argument(
        "--student",
        default="bundled",
        metavar="REF",
        help="base model: bundled (default), a .gguf file, a model directory or a hub id",
    )
    parser.add_argument(
        "--template",
        choices=("alpaca", "vicuna", "chat", "plain"),
        default=None,
        help="default: chat when the student has a chat template, else alpaca (as scored)",
    )
    parser.add_argument(
        "--warehouse",
        type=Path,
        default=None,
        metavar="DB",
        help="DuckDB file for --arm (default: the warehouse the environment names: data/warehouse.duckdb, or the "
        "shared tables with REFLECTION_STORAGE=shared)",
    )
    parser.add_argument(
        "--merge-into",
        type=Path,
        default=None,
        metavar="DIR",
        help="also merge the adapter into the base and save a plain model here",
    )
    knobs = parser.add_argument_group("training (defaults as in the lora_checkpoint asset)")
    add_dataclass_arguments(knobs, LoraSettings)  # every field a flag, typed and explained by the field


def settings_from(args: argparse.Namespace) -> LoraSettings:
    return dataclass_from_args(LoraSettings, args)


def arm_pairs(arm: str, database: Path | None) -> list:
    """The arm's rows and their raw context, read from the warehouse the asset graph wrote: `database`, else the
    one the environment names (the local file, or the shared tables with REFLECTION_STORAGE=shared)."""
    from reflection_assets.database import table_exists
    from reflection_assets.training.dataset import training_pairs
    from resources.warehouse import Warehouse

    warehouse = Warehouse.from_env() if database is None else Warehouse(database=str(database))
    where = warehouse.describe()
    if not warehouse.tables_uri and not Path(warehouse.database).is_file():
        raise ValueError(f"{where}: no warehouse (build the arms first: reflection-tuning demo)")
    with warehouse.connection(read_only=True) as conn:
        if not table_exists(conn, "arm_datasets"):
            raise ValueError(f"{where}: no arm_datasets table (build the arms first)")
        # Every seed of an arm is stored; the first seed's draw is the arm's rows here.
        seeds = conn.execute("SELECT min(seed) FROM arm_datasets WHERE arm = ?", [arm]).fetchone()[0]
        rows = conn.execute(
            "SELECT * FROM arm_datasets WHERE arm = ? AND seed = ? ORDER BY row_id", [arm, seeds]
        ).df()
        raw = conn.execute("SELECT * FROM raw_instructions").df() if table_exists(conn, "raw_instructions") else None
    if rows.empty:
        raise ValueError(f"{where}: arm {arm!r} has no rows in arm_datasets")
    return training_pairs(rows, raw)


SUMMARY_FIELDS = (
    "status",
    "skipped_reason",
    "adapter_path",
    "key",
    "rows_given",
    "rows_trained",
    "steps",
    "first_loss",
    "final_loss",
    "loss_window",
    "train_seconds",
)


def run(args: argparse.Namespace) -> int:
    """Train on this process; under a launcher every rank runs this, the main one speaks for them.

    Launched by Dagster (`lora_checkpoint` with num_processes > 1, through Pipes), the main process
    sends its log lines and the outcome back to the step; every rank leaves a report for the step
    (started, failed with what, finished), so a failed launch names the rank and its error.
    """
    from reflection_assets.training.launch import RankReport

    report = RankReport()
    report.started()
    try:
        with pipes_channel() as pipes:
            code = train(args, pipes, report)
    except BaseException as exc:
        report.failed(exc)
        raise
    if code == 0 or code == 3:
        report.finished()
    return code


def train(args: argparse.Namespace, pipes, report) -> int:  # noqa: ANN001 - a Pipes context or None, a RankReport
    from reflection_assets.commands.score import InputError, read_pairs
    from reflection_assets.model_store import ModelReferenceError
    from reflection_assets.paths import checkpoints_dir
    from reflection_assets.ranks import is_main_process

    def fail(exc: Exception, user_error: bool = True) -> int:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        report.failed(exc, user_error=user_error)
        return 2

    try:
        settings = settings_from(args)
        if args.data is not None:
            pairs, name = read_pairs(args.data), args.name or args.data.stem
        else:
            pairs, name = arm_pairs(args.arm, args.warehouse), args.name or args.arm
    except (InputError, ValueError) as exc:
        return fail(exc)

    from reflection_assets.training import train_lora

    def log(message: str) -> None:
        if pipes is not None:
            pipes.log.info(message)
        print(message, file=sys.stderr, flush=True)

    try:
        outcome = train_lora(
            pairs, args.student, settings, args.output or checkpoints_dir(), name, template=args.template, log=log
        )
    except (ModelReferenceError, ValueError) as exc:
        return fail(exc)
    except OSError as exc:  # a full disk, an unreadable folder: said plainly, but worth a retry
        return fail(exc, user_error=False)
    if not is_main_process():
        return 0 if outcome.adapter_path else 3  # the main process reports, merges and prints
    summary = {k: getattr(outcome, k) for k in SUMMARY_FIELDS}
    if args.merge_into and outcome.adapter_path:
        from reflection_assets.training.merge import merge_adapter

        # after train_lora's barrier: the adapter is complete and marked finished
        summary["merged_path"] = str(merge_adapter(args.student, outcome.adapter_path, args.merge_into))
    if pipes is not None:
        from dataclasses import asdict

        pipes.report_custom_message({"outcome": asdict(outcome)})
    print(json.dumps(summary))
    return 0 if outcome.adapter_path else 3  # 3: a reasoned skip, nothing to use


@contextmanager
def pipes_channel():
    """The Dagster Pipes context when a Dagster step launched this process and this is the main rank.

    Only one process may write to the step's message channel (a second writer breaks the run), and
    outside Dagster there is none: then None, and `dagster_pipes` is not even imported (it need not
    be installed where training runs from a shell).
    """
    from reflection_assets.ranks import is_main_process

    if not is_main_process() or not os.environ.get("DAGSTER_PIPES_CONTEXT"):
        yield None
        return
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        yield pipes
