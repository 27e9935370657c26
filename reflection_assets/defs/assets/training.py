"""`lora_checkpoint`: LoRA fine-tuning of the student on each arm (thin glue over `reflection_assets.training`).

Dagster always runs the step; `train_lora` keys the adapter by its inputs, so unchanged inputs reuse
the finished adapter and an interrupted run resumes. One MLflow run per checkpoint: its per-step
curve is logged once, from the trainer's history, so a resumed run logs no step twice.
"""

import math
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Literal, Optional, TypeVar

import dagster as dg
import pandas as pd
from dagster._core.errors import DagsterPipesExecutionError  # not re-exported by `dagster` (1.13)
from pydantic import Field

from reflection_assets.defs.assets.common import ALL, markdown_preview, numeric_metadata
from reflection_assets.defs.partitions import ARM_PARTITION_EXPR, arm_and_seed, arm_partitions
from reflection_assets.documented import mirrored
from reflection_assets.model_store import ModelReferenceError
from reflection_assets.plots import line_png, png_markdown
from reflection_assets.training import train_lora, training_pairs
from reflection_assets.training.checkpoints import CheckpointLayout
from reflection_assets.training.dataset import TrainingDataError
from reflection_assets.training.launch import REPORT_DIR_ENV, Launch, launch_failure, settings_arguments, write_pairs
from reflection_assets.training.lineage import record_trained_rows
from reflection_assets.training.settings import LoraSettings
from reflection_assets.training.statuses import CHECKPOINT_COLUMNS, SKIPPED, TRAINED
from reflection_assets.training.trainer import STEP_METRICS, TrainingOutcome
from resources.student import StudentModel
from resources.tracking import MlflowTracking
from resources.warehouse import Warehouse

T = TypeVar("T")


class LoraCheckpointConfig(dg.Config):
    """Every knob of the LoRA run (defaults: the demo's r=8, 2 epochs, fp32 on CPU / bf16 on CUDA)."""

    enabled: bool = Field(
        default=True,
        description="false: skip this arm with a reason (the demo trains selective, reflected_all and random)",
    )
    rank: int = mirrored(LoraSettings, "rank")
    alpha: int = mirrored(LoraSettings, "alpha")
    dropout: float = mirrored(LoraSettings, "dropout")
    target_modules: list[str] = mirrored(LoraSettings, "target_modules", default=list(LoraSettings.target_modules))
    epochs: float = mirrored(LoraSettings, "epochs")
    learning_rate: float = mirrored(LoraSettings, "learning_rate")
    warmup: float = mirrored(LoraSettings, "warmup")
    lr_scheduler: str = mirrored(LoraSettings, "lr_scheduler")
    batch_size: int = mirrored(LoraSettings, "batch_size")
    gradient_accumulation: int = mirrored(LoraSettings, "gradient_accumulation")
    max_length: int = mirrored(LoraSettings, "max_length")
    packing: bool = mirrored(LoraSettings, "packing")
    seed: int = mirrored(LoraSettings, "seed")
    precision: Literal["auto", "fp32", "bf16"] = mirrored(LoraSettings, "precision")
    load_in_4bit: bool = mirrored(LoraSettings, "load_in_4bit")
    activation_checkpointing: Optional[bool] = mirrored(LoraSettings, "activation_checkpointing")
    device: str = mirrored(LoraSettings, "device")
    max_steps: int = mirrored(LoraSettings, "max_steps")
    save_steps: int = mirrored(LoraSettings, "save_steps")
    min_rows: int = mirrored(LoraSettings, "min_rows")
    collective_timeout: int = mirrored(LoraSettings, "collective_timeout")
    num_processes: int = Field(
        default=1,
        description="1: train in this step's process; more: launch that many training processes (one per GPU) "
        "with torchrun, or accelerate with accelerate_config, through Dagster Pipes",
    )
    accelerate_config: Optional[str] = Field(
        default=None,
        description="an accelerate config file for the launch, e.g. deploy/accelerate/fsdp2.yaml (FSDP2) or "
        "zero3.yaml (DeepSpeed ZeRO-3); none: torchrun with DDP",
    )

    def settings(self) -> LoraSettings:
        values = self.model_dump(exclude={"enabled", "num_processes", "accelerate_config"})
        values["target_modules"] = tuple(values["target_modules"])
        return LoraSettings(**values)


@dg.asset(
    ins={"raw_instructions": ALL},
    partitions_def=arm_partitions,
    metadata={"partition_expr": ARM_PARTITION_EXPR},
    group_name="training",
    pool="gpu",
    kinds={"pytorch", "duckdb", "mlflow"},
    description="LoRA adapter of the student trained on one arm with one seed (TRL SFTTrainer + PEFT; the seed "
    "partition is added to the config's seed), reused when unchanged.",
)
def lora_checkpoint(
    context: dg.AssetExecutionContext,
    config: LoraCheckpointConfig,
    arm_datasets: pd.DataFrame,
    raw_instructions: pd.DataFrame,
    student: StudentModel,
    mlflow: MlflowTracking,
    warehouse: Warehouse,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult[pd.DataFrame]:
    arm, replicate = arm_and_seed(context.partition_key)
    name = run_name(arm, replicate)
    settings = replace(checked(name, config.settings), seed=config.seed + replicate)
    template = checked(name, lambda: student.scoring_config().template)
    pairs = checked(name, lambda: training_pairs(arm_datasets, raw_instructions))
    if not config.enabled:
        outcome = disabled(student.model, len(pairs))
    elif launched(config):
        launch = checked(name, lambda: Launch(config.num_processes, config.accelerate_config))
        client = pipes_subprocess_client
        outcome = train_launched(context, client, launch, pairs, settings, student.model, template, name, warehouse)
    else:
        outcome = checked(name, lambda: train_lora(
            pairs, student.model, settings, warehouse.checkpoints_root(), name, template=template,
            log=context.log.info, mirror=warehouse.checkpoint_mirror(),
        ))
    if outcome.status == SKIPPED:
        context.log.warning(f"{name}: skipped, {outcome.skipped_reason}")
    record_trained_rows(warehouse.store, arm, replicate, outcome.key, outcome.trained_row_ids)
    link, run_id = track(context, mlflow, outcome, settings, warehouse, name)
    frame = checkpoint_frame(arm, outcome, run_id, replicate)
    return dg.MaterializeResult(value=frame, metadata=checkpoint_metadata(outcome, frame, link))


def checked(name: str, work: Callable[[], T]) -> T:
    """`work()`, or the run fails naming the arm: bad settings, rows that cannot be trained on, a model
    that is not there are the user's to fix, so they are not retried."""
    try:
        return work()
    except (ValueError, TrainingDataError, ModelReferenceError) as error:
        raise dg.Failure(f"lora_checkpoint[{name}]: {error}", allow_retries=False) from None


def disabled(base_model: str, rows: int) -> TrainingOutcome:
    """The outcome of an arm the run config switched off: skipped, with the reason."""
    return TrainingOutcome(
        status=SKIPPED, key="", base_model=base_model, base_fingerprint="", template="", rows_given=rows,
        rows_trained=0, skipped_reason="training disabled for this arm in the run config (enabled=false)",
    )


def launched(config: LoraCheckpointConfig) -> bool:
    """More than one process, or an accelerate config (FSDP / ZeRO-3 need their launcher even for one)."""
    return config.num_processes > 1 or bool(config.accelerate_config)


def train_launched(
    context: dg.AssetExecutionContext,
    client: dg.PipesSubprocessClient,
    launch: Launch,
    pairs: list,
    settings: LoraSettings,
    student_model: str,
    template: str | None,
    arm: str,
    warehouse: Warehouse,
) -> TrainingOutcome:
    """`reflection-tuning train` under torchrun / accelerate through Dagster Pipes: the main rank's log
    lines arrive in this step's log, its outcome as a Pipes message; a failed launch fails the step
    naming the rank and its error (a user's mistake is not retried, a crash is). `arm`: the run's name.
    On the shared stores the finished adapter is published afterwards (the launched ranks train locally)."""
    root = warehouse.checkpoints_root()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".launch-{arm}-", dir=root) as folder:
        rows = write_pairs(pairs, Path(folder) / "rows.jsonl")
        reports = Path(folder) / "ranks"
        train_args = ["--data", str(rows), "--name", arm, "--output", str(root), "--student", student_model]
        train_args += (["--template", template] if template else []) + settings_arguments(settings)
        command = launch.command(train_args)
        context.log.info(f"{arm}: launching {launch.num_processes} training processes: {shlex.join(command)}")
        try:
            invocation = client.run(command=command, context=context, env={REPORT_DIR_ENV: str(reports)})
        except DagsterPipesExecutionError as error:
            failure = launch_failure(reports, launch.num_processes)
            raise dg.Failure(
                f"lora_checkpoint[{arm}]: training failed across {launch.num_processes} processes: "
                f"{failure.message()} ({error})",
                allow_retries=not failure.user_error,
            ) from None
    outcomes = [m["outcome"] for m in invocation.get_custom_messages() if isinstance(m, dict) and "outcome" in m]
    if len(outcomes) != 1:
        raise dg.Failure(f"lora_checkpoint[{arm}]: the training processes sent {len(outcomes)} outcomes, not 1")
    outcome, mirror = TrainingOutcome(**outcomes[0]), warehouse.checkpoint_mirror()
    if mirror is None or outcome.status == SKIPPED:
        return outcome
    return replace(outcome, adapter_path=mirror.published(CheckpointLayout.under(root, arm, outcome.key)))


def run_name(arm: str, replicate: int) -> str:
    """The adapter's folder and log name: the arm, with its seed after the first (seed 0 keeps the arm's name)."""
    return arm if replicate == 0 else f"{arm}-seed{replicate}"


def checkpoint_frame(arm: str, outcome: TrainingOutcome, run_id: str, replicate: int = 0) -> pd.DataFrame:
    row = {
        "arm": arm,
        "seed": str(replicate),
        "status": outcome.status,
        "skipped_reason": outcome.skipped_reason,
        "checkpoint_key": outcome.key,
        "adapter_path": outcome.adapter_path,
        "base_model": outcome.base_model,
        "base_fingerprint": outcome.base_fingerprint,
        "rows_given": int(outcome.rows_given),
        "rows_trained": int(outcome.rows_trained),
        "first_loss": float(outcome.first_loss),
        "final_loss": float(outcome.final_loss),
        "train_seconds": float(outcome.train_seconds),
        "mlflow_run_id": run_id,
        "steps": int(outcome.steps),
        "tokens_seen": int(outcome.tokens_seen),
        "template": outcome.template,
    }
    return pd.DataFrame([row], columns=CHECKPOINT_COLUMNS)


def loss_plot(outcome: TrainingOutcome) -> bytes | None:
    steps, losses = outcome.loss_curve()
    if not losses:
        return None
    return line_png({"train loss": (steps, losses)}, f"LoRA training loss ({outcome.status})", "step", "loss")


def checkpoint_metadata(outcome: TrainingOutcome, frame: pd.DataFrame, link: dict) -> dict:
    numbers = {
        "rows_given": outcome.rows_given,
        "rows_trained": outcome.rows_trained,
        "steps": outcome.steps,
        "tokens_seen": outcome.tokens_seen,
        "train_seconds": round(outcome.train_seconds, 2),
        "resumed_from_step": outcome.resumed_from_step,
    }
    losses = {
        k: v for k, v in (("first_loss", outcome.first_loss), ("final_loss", outcome.final_loss)) if not math.isnan(v)
    }
    metadata = {
        "status": dg.MetadataValue.text(outcome.status),
        **numeric_metadata(numbers),
        **{k: dg.MetadataValue.float(float(v)) for k, v in losses.items()},
        **({"loss_window": dg.MetadataValue.text(outcome.loss_window)} if losses and outcome.loss_window else {}),
        "preview": markdown_preview(
            frame, ["arm", "status", "rows_trained", "first_loss", "final_loss", "train_seconds"]
        ),
        **link,
    }
    if outcome.skipped_reason:
        metadata["skipped_reason"] = dg.MetadataValue.text(outcome.skipped_reason)
    if outcome.adapter_path:
        metadata["adapter_path"] = dg.MetadataValue.path(outcome.adapter_path)
        metadata["checkpoint_key"] = dg.MetadataValue.text(outcome.key)
    png = loss_plot(outcome)
    if png is not None:
        metadata["loss_curve"] = dg.MetadataValue.md(png_markdown(png, "training loss"))
    return metadata


def track(
    context: dg.AssetExecutionContext,
    mlflow: MlflowTracking,
    outcome: TrainingOutcome,
    settings: LoraSettings,
    warehouse: Warehouse,
    name: str,
) -> tuple[dict, str]:
    """One MLflow run per checkpoint: logged when trained, linked again when reused, none when skipped."""
    if outcome.status == SKIPPED:
        return {}, ""
    layout = CheckpointLayout.under(warehouse.checkpoints_root(), name, outcome.key)  # this node's copy
    known = layout.read_tracking().get("mlflow_run_id", "")
    if outcome.status != TRAINED and known:
        run = mlflow.find_run(known)
        if run is not None:
            return mlflow.link_metadata(run), known
    run = mlflow.log_run(context, "lora_checkpoint", **checkpoint_run(outcome, settings, layout.adapter_dir))
    layout.write_tracking({"mlflow_run_id": run.info.run_id})
    mirror = warehouse.checkpoint_mirror()
    if mirror is not None:
        mirror.publish_tracking(layout)
    return mlflow.link_metadata(run), run.info.run_id


def checkpoint_run(outcome: TrainingOutcome, settings: LoraSettings, adapter_folder: Path) -> dict:
    """What a checkpoint's MLflow run holds: params, the per-step curve from the trainer's history (so a
    resumed run logs no step twice), the summary, the trained row ids, the loss plot and the adapter."""
    summary = {
        "first_loss": outcome.first_loss,
        "final_loss": outcome.final_loss,
        "steps": outcome.steps,
        "tokens_seen": outcome.tokens_seen,
        "train_seconds": outcome.train_seconds,
    }
    curve = [
        (int(entry["step"]), {k: float(entry[k]) for k in STEP_METRICS if entry.get(k) is not None})
        for entry in outcome.log_history
    ]
    png = loss_plot(outcome)
    return {
        "params": {
            **settings.as_params(),
            "base_model": outcome.base_model,
            "base_fingerprint": outcome.base_fingerprint,
            "template": outcome.template,
            "rows_trained": outcome.rows_trained,
        },
        "metrics": {f"summary_{k}": float(v) for k, v in summary.items() if not math.isnan(float(v))},
        "step_metrics": curve,
        "artifacts": {
            "trained_row_ids.txt": "\n".join(outcome.trained_row_ids),
            **({"loss_curve.png": png} if png is not None else {}),
        },
        "artifact_folders": {"adapter": str(adapter_folder)},
        # summary_first_loss / summary_final_loss are means over a window (training.losses); the tag says which.
        "tags": {"checkpoint_key": outcome.key} | ({"loss_window": outcome.loss_window} if outcome.loss_window else {}),
    }
