"""`reflection-tuning train`: a data file or an arm -> a LoRA adapter folder, without Dagster.

It calls the same `train_lora` as the `lora_checkpoint` asset, so a run here and a run there with
the same rows and settings share their checkpoint (key = base model, rows, settings, libraries).
Several GPUs: `accelerate launch --config_file deploy/accelerate/fsdp2.yaml -m reflection_assets.cli train ...`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from reflection_assets.training.settings import LoraSettings

DEFAULTS = LoraSettings()


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
        help="DuckDB file for --arm (default: data/warehouse.duckdb)",
    )
    parser.add_argument(
        "--merge-into",
        type=Path,
        default=None,
        metavar="DIR",
        help="also merge the adapter into the base and save a plain model here",
    )
    knobs = parser.add_argument_group("training (defaults as in the lora_checkpoint asset)")
    knobs.add_argument("--rank", type=int, default=DEFAULTS.rank)
    knobs.add_argument("--alpha", type=int, default=DEFAULTS.alpha)
    knobs.add_argument("--dropout", type=float, default=DEFAULTS.dropout)
    knobs.add_argument(
        "--target-modules", default=",".join(DEFAULTS.target_modules), help="comma-separated, or all-linear"
    )
    knobs.add_argument("--epochs", type=float, default=DEFAULTS.epochs)
    knobs.add_argument("--learning-rate", type=float, default=DEFAULTS.learning_rate)
    knobs.add_argument(
        "--warmup", type=float, default=DEFAULTS.warmup, help="below 1: fraction of the steps; from 1 up: steps"
    )
    knobs.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="per device")
    knobs.add_argument("--gradient-accumulation", type=int, default=DEFAULTS.gradient_accumulation)
    knobs.add_argument("--max-length", type=int, default=DEFAULTS.max_length)
    knobs.add_argument("--packing", action="store_true", help="padding-free packing (exact with SDPA)")
    knobs.add_argument("--seed", type=int, default=DEFAULTS.seed)
    knobs.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=DEFAULTS.precision,
        help="auto: fp32 on CPU, bf16 on CUDA",
    )
    knobs.add_argument("--load-in-4bit", action="store_true", help="QLoRA: nf4 with double quantization (CUDA only)")
    knobs.add_argument("--device", default=DEFAULTS.device, help="auto, cpu, cuda, cuda:1 ...")
    knobs.add_argument("--max-steps", type=int, default=DEFAULTS.max_steps)
    knobs.add_argument("--save-steps", type=int, default=DEFAULTS.save_steps)
    knobs.add_argument("--min-rows", type=int, default=DEFAULTS.min_rows)


def settings_from(args: argparse.Namespace) -> LoraSettings:
    return LoraSettings(
        rank=args.rank,
        alpha=args.alpha,
        dropout=args.dropout,
        target_modules=tuple(m.strip() for m in args.target_modules.split(",") if m.strip()),
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        warmup=args.warmup,
        batch_size=args.batch_size,
        gradient_accumulation=args.gradient_accumulation,
        max_length=args.max_length,
        packing=args.packing,
        seed=args.seed,
        precision=args.precision,
        load_in_4bit=args.load_in_4bit,
        device=args.device,
        max_steps=args.max_steps,
        save_steps=args.save_steps,
        min_rows=args.min_rows,
    )


def arm_pairs(arm: str, database: Path) -> list:
    """The arm's rows and their raw context, read from the warehouse the asset graph wrote."""
    from reflection_assets.database import connect, table_exists
    from reflection_assets.training.dataset import training_pairs

    if not database.is_file():
        raise ValueError(f"{database}: no warehouse (build the arms first: reflection-tuning demo)")
    with connect(database, read_only=True) as conn:
        if not table_exists(conn, "arm_datasets"):
            raise ValueError(f"{database}: no arm_datasets table (build the arms first)")
        rows = conn.execute("SELECT * FROM arm_datasets WHERE arm = ? ORDER BY row_id", [arm]).df()
        raw = conn.execute("SELECT * FROM raw_instructions").df() if table_exists(conn, "raw_instructions") else None
    if rows.empty:
        raise ValueError(f"{database}: arm {arm!r} has no rows in arm_datasets")
    return training_pairs(rows, raw)


def run(args: argparse.Namespace) -> int:
    from reflection_assets.commands.score import InputError, read_pairs
    from reflection_assets.paths import checkpoints_dir, warehouse_path

    try:
        settings = settings_from(args)
        if args.data is not None:
            pairs, name = read_pairs(args.data), args.name or args.data.stem
        else:
            pairs, name = arm_pairs(args.arm, args.warehouse or warehouse_path()), args.name or args.arm
    except (InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from reflection_assets.model_store import ModelReferenceError
    from reflection_assets.training import train_lora

    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    try:
        outcome = train_lora(
            pairs, args.student, settings, args.output or checkpoints_dir(), name, template=args.template, log=log
        )
    except (ModelReferenceError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {
        k: getattr(outcome, k)
        for k in (
            "status",
            "skipped_reason",
            "adapter_path",
            "key",
            "rows_given",
            "rows_trained",
            "steps",
            "first_loss",
            "final_loss",
            "train_seconds",
        )
    }
    if args.merge_into and outcome.adapter_path:
        from reflection_assets.training.merge import merge_adapter

        summary["merged_path"] = str(merge_adapter(args.student, outcome.adapter_path, args.merge_into))
    print(json.dumps(summary))
    return 0 if outcome.adapter_path else 3  # 3: a reasoned skip, nothing to use
