"""What the driver commands print: one line per stage, the result tables, where to look next.

Dagster's event stream stays in the instance (the web UI shows it); the terminal gets a summary read
back from the run's events: each materialized asset with its step time and a few headline counts.
Third-party chatter (deprecation warnings, progress bars, per-call INFO logs) is silenced unless the
user asks for it with `--verbose`.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Headline metadata per asset, in the order printed; a key an asset does not report is left out.
HEADLINES: dict[str, tuple[tuple[str, str], ...]] = {
    "raw_instructions": (
        ("accepted", "accepted"),
        ("rejected", "rejected"),
        ("near_duplicates", "near-duplicates removed"),
        ("near_duplicate_calls_saved", "teacher calls saved"),
    ),
    "raw_ifd_scores": (("rows", "rows"), ("ifd_ppl_mean", "mean IFD")),
    "instruction_reflections": (
        ("outcome_reflected", "reflected"),
        ("outcome_parse_failed", "parse failed"),
        ("outcome_teacher_error", "teacher errors"),
        ("calls_made", "calls"),
        ("calls_cached", "cached"),
    ),
    "instruction_ifd_scores": (("choice_reflected", "rewrite kept"), ("choice_original", "original kept")),
    "response_reflections": (
        ("outcome_reflected", "reflected"),
        ("outcome_parse_failed", "parse failed"),
        ("outcome_teacher_error", "teacher errors"),
        ("calls_made", "calls"),
        ("calls_cached", "cached"),
    ),
    "response_scores": (("choice_reflected", "answer rewrite won"), ("choice_original", "original won")),
    "selected_dataset": (
        ("rows_scored", "scored"),
        ("rows_selected", "selected"),
        ("rows_decontaminated", "decontaminated"),
    ),
    "arm_datasets": (
        ("rows", "rows"),
        ("shortfall", "short by"),
        ("rows_decontaminated", "decontaminated"),
    ),
    "lora_checkpoint": (
        ("status", "status"),
        ("rows_trained", "rows"),
        ("first_loss", "loss"),
        ("final_loss", "->"),
        ("loss_window", "mean per"),  # first and last epoch's means, halves', or one mean per run (training.losses)
        ("skipped_reason", "why"),
    ),
    "eval_scores": (
        ("rows", "scores"),
        ("models", "models"),
        ("generated", "generated"),
        ("generated_cached", "cached"),
    ),
    "ablation_report": (("rows", "rows"),),
}
SILENT_ASSETS = {"rejected_rows"}  # reported by raw_instructions' line
# An empty result is a result with a reason: printed under the stage's line, with what follows from it.
NOTES: dict[str, tuple[str, str]] = {
    "selected_dataset": (
        "empty_reason",
        "{}: the arms sized to it are skipped with that reason (see selected_dataset's metadata)",
    ),
    "arm_datasets": ("skipped_reason", "arm skipped: {}"),
}


@dataclass(frozen=True)
class StageLine:
    asset: str
    partition: str | None
    seconds: float
    numbers: tuple[tuple[str, Any], ...]
    note: str = ""

    def render(self) -> str:
        where = f"[{self.partition}]" if self.partition else ""
        labels = [label for label, _ in self.numbers]
        # "->" with nothing before it (a run too short for a trend has one mean loss) reads as its own figure
        renamed = [
            (labels[i - 1] if label == "->" and i and _label(*self.numbers[i - 1]) == "" else label, value)
            for i, (label, value) in enumerate(self.numbers)
        ]
        parts = [p for p in (_label(label, value) for label, value in renamed) if p]
        # "->" continues the number before it ("loss 2.31 -> 1.87"), the rest are separate figures
        text = "".join(p if i == 0 else (" " if p.startswith("-> ") else ", ") + p for i, p in enumerate(parts))
        line = f"  {self.asset + where:<34} {self.seconds:7.1f}s  " + text
        return line + (f"\n    {self.note}" if self.note else "")


def _label(label: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        text = f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    else:
        text = str(value)
    if label == "->":  # continues the previous number: "loss 2.31 -> 1.87"
        return f"-> {text}"
    return f"{label} {text}"


def _value(entry: Any) -> Any:
    """A plain Python value from a Dagster MetadataValue (or a raw value)."""
    return getattr(entry, "value", entry)


def stage_lines(instance: Any, run_id: str, finished_only: bool = False) -> list[StageLine]:
    """One line per materialization of the run, with its step's wall time and headline numbers.

    `finished_only` leaves out steps still running (their materialization comes before the step's end).
    """
    import dagster as dg

    records = instance.all_logs(
        run_id,
        of_type={
            dg.DagsterEventType.STEP_START,
            dg.DagsterEventType.STEP_SUCCESS,
            dg.DagsterEventType.ASSET_MATERIALIZATION,
        },
    )
    started: dict[str, float] = {}
    finished: dict[str, float] = {}
    materialized: list[tuple[str, Any]] = []
    for record in records:
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[record.step_key] = record.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            finished[record.step_key] = record.timestamp
        else:
            materialized.append((record.step_key, event.step_materialization_data.materialization))
    lines = []
    for step_key, materialization in materialized:
        asset = materialization.asset_key.to_user_string()
        if asset in SILENT_ASSETS or (finished_only and step_key not in finished):
            continue
        seconds = finished.get(step_key, 0.0) - started.get(step_key, 0.0)
        meta = materialization.metadata
        # an absent figure stays as None (hidden when rendered): "->" then knows it has nothing to continue
        numbers = tuple((label, _value(meta[key]) if key in meta else None) for key, label in HEADLINES.get(asset, ()))
        numbers = tuple((label, value) for label, value in numbers if value != "")
        key, template = NOTES.get(asset, ("", ""))
        note = template.format(_value(meta[key])) if key in meta and _value(meta[key]) else ""
        lines.append(StageLine(asset, materialization.partition, max(seconds, 0.0), numbers, note))
    return lines


def quiet_libraries(verbose: bool) -> None:
    """Silence deprecation warnings, progress bars and chatty INFO loggers of the libraries we drive."""
    if verbose:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    warnings.filterwarnings("ignore")
    for name in (
        "transformers",
        "peft",
        "trl",
        "accelerate",
        "datasets",
        "bitsandbytes",
        "mlflow",
        "alembic",
        "httpx",
        "urllib3",
        "lm-eval",
        "lm_eval",
        "filelock",
        "huggingface_hub",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # transformers is a dependency; this only guards partial installs
        pass
    try:  # mlflow configures its own logger when imported: import it first, then quiet it
        import mlflow  # noqa: F401

        logging.getLogger("mlflow").setLevel(logging.ERROR)
    except ImportError:
        pass
    _quiet_lm_eval_progress()
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.utils.logging.set_verbosity_error()
    except ImportError:
        pass


def _quiet_lm_eval_progress() -> None:
    """lm-eval passes `disable=` to its progress bars explicitly, so TQDM_DISABLE cannot reach them:
    its modules get a progress bar that is always disabled (the driver's process only)."""
    try:
        import tqdm
        from lm_eval.api import model as lm_model
        from lm_eval.api import task as lm_task
        from lm_eval.models import huggingface as lm_hf
    except ImportError:
        return

    class _Silent(tqdm.tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    for module in (lm_model, lm_task, lm_hf):
        module.tqdm = _Silent


def console_run_config(run_config: Mapping[str, Any] | None, verbose: bool) -> dict:
    """The run config with the console logger at CRITICAL (DEBUG with --verbose); the instance keeps every event.

    Warnings and step failures stay in the instance and the UI; what a person needs from them (a
    shortfall, an empty selection, a skipped arm, the failing step and its error) is printed by the
    driver in a line, without Dagster's stack traces.
    """
    config = dict(run_config or {})
    config["loggers"] = {"console": {"config": {"log_level": "DEBUG" if verbose else "CRITICAL"}}}
    return config


def markdown_table(rows: Iterable[Mapping[str, Any]], columns: list[str], floatfmt: str = ".3f") -> str:
    from tabulate import tabulate

    data = [[row.get(c) for c in columns] for row in rows]
    return tabulate(data, headers=columns, tablefmt="github", floatfmt=floatfmt, missingval="")
