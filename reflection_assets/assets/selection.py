"""Selection across datasets and the per-arm training sets.

`selected_dataset` keeps every scored row with `selected` and the reason, so the decision is
auditable; the exports hold only the selected rows. The arms are the method and its baselines at
the selective set's size.
"""

from typing import Optional

import dagster as dg
import pandas as pd

from reflection_assets.assets.common import histogram_metadata, markdown_preview, numeric_metadata, ok_values
from reflection_assets.partitions import ARMS, arm_partitions
from reflection_assets.paths import exports_dir
from reflection_assets.selection import (
    ArmInputs,
    SelectionSettings,
    build_arm,
    decision_counts,
    decision_counts_dict,
    select_rows,
)
from reflection_assets.selection.export import export_arm
from reflection_assets.selection.reflection_format import REFLECTION_FORMAT_PROMPT_VERSION, REFLECTION_SYSTEM_PROMPT
from resources.student import StudentModel
from resources.teacher import Teacher
from resources.tracking import MlflowTracking
from resources.warehouse import Warehouse

ALL = dg.AssetIn(partition_mapping=dg.AllPartitionMapping())

SELECTED_COLUMNS = ["row_id", "final_instruction", "final_input", "final_output", "final_ifd", "final_rifd"]


class SelectionConfig(dg.Config):
    """The published filter by default; the extensions are off unless set here."""

    max_ifd: float = 1.0
    max_rifd: float = 1.0
    extension_keep_lost_answers: bool = False
    extension_budget_fraction: Optional[float] = None
    extension_budget_count: Optional[int] = None
    response_style: str = "plain"  # plain | reflection (Reflection-70B: <thinking>, <reflection>, <output>)
    format_max_new_tokens: int = 384

    def settings(self) -> SelectionSettings:
        return SelectionSettings(
            max_ifd=self.max_ifd,
            max_rifd=self.max_rifd,
            extension_keep_lost_answers=self.extension_keep_lost_answers,
            extension_budget_fraction=self.extension_budget_fraction,
            extension_budget_count=self.extension_budget_count,
        )


def selected_pairs(selection: pd.DataFrame) -> pd.DataFrame:
    """The selected rows as plain pairs (row_id, instruction, input, output) for export."""
    chosen = selection[selection["selected"].astype(bool)]
    return chosen.rename(
        columns={"final_instruction": "instruction", "final_input": "input", "final_output": "output"}
    )[["row_id", "instruction", "input", "output"]]


@dg.asset(
    ins={"response_scores": ALL, "raw_ifd_scores": ALL},
    group_name="selection",
    kinds={"duckdb", "python"},
    description="Rows whose reflected answer won and whose final pair has IFD < 1 and r-IFD < 1 (as published).",
)
def selected_dataset(
    context: dg.AssetExecutionContext,
    config: SelectionConfig,
    response_scores: pd.DataFrame,
    raw_ifd_scores: pd.DataFrame,
    mlflow: MlflowTracking,
    teacher: Teacher,
    student: StudentModel,
    warehouse: Warehouse,
) -> dg.MaterializeResult[pd.DataFrame]:
    try:
        settings = config.settings()
    except ValueError as error:
        raise dg.Failure(f"selection config: {error}", allow_retries=False) from None
    if config.response_style not in ("plain", "reflection"):
        raise dg.Failure(f"response_style must be 'plain' or 'reflection', not {config.response_style!r}", allow_retries=False)
    datasets = sorted(response_scores["dataset"].unique()) if len(response_scores) else []
    context.log.info(f"selecting over dataset partitions {datasets} ({len(response_scores)} rows)")
    selection = select_rows(response_scores, settings)
    counts = decision_counts_dict(selection)
    # Selection itself reads scored tables only: no teacher call, no forward pass (the metadata says so).
    style_numbers: dict = {"teacher_calls_made": 0, "tokens_computed": 0}
    if config.response_style == "reflection":
        selection, style_numbers = rewrite_in_reflection_format(context, selection, config, teacher, student, warehouse)
    chosen = selected_pairs(selection)
    system = REFLECTION_SYSTEM_PROMPT if config.response_style == "reflection" else None
    paths = export_arm(chosen, exports_dir() / "selected", "selected", system=system)
    selected_mask = selection["selected"].astype(bool)
    ifd_plot, ifd_png = histogram_metadata(
        {"raw": ok_values(raw_ifd_scores, "ifd_ppl", "ifd_status"),
         "selected": [float(v) for v in selection.loc[selected_mask, "final_ifd"].dropna()]},
        "IFD: raw vs selected", "IFD",
    )
    rifd_plot, rifd_png = histogram_metadata(
        {"raw": ok_values(raw_ifd_scores, "rifd_ppl", "rifd_status"),
         "selected": [float(v) for v in selection.loc[selected_mask, "final_rifd"].dropna()]},
        "r-IFD: raw vs selected", "r-IFD",
    )
    link = log_selection(context, mlflow, chosen, counts, config, {"ifd_raw_vs_selected.png": ifd_png, "rifd_raw_vs_selected.png": rifd_png})
    return dg.MaterializeResult(
        value=selection,
        metadata={
            "rows_scored": dg.MetadataValue.int(len(selection)),
            "rows_selected": dg.MetadataValue.int(len(chosen)),
            "datasets": dg.MetadataValue.json(datasets),
            "decision_counts": dg.MetadataValue.md(decision_counts(selection).to_markdown(index=False)),
            **numeric_metadata(counts),
            **numeric_metadata(style_numbers),
            "response_style": config.response_style,
            "ifd_histogram": ifd_plot,
            "rifd_histogram": rifd_plot,
            "preview": markdown_preview(selection[selected_mask], SELECTED_COLUMNS),
            **{f"export_{k}": dg.MetadataValue.path(str(v)) for k, v in paths.items()},
            **link,
        },
    )


def rewrite_in_reflection_format(
    context: dg.AssetExecutionContext,
    selection: pd.DataFrame,
    config: SelectionConfig,
    teacher: Teacher,
    student: StudentModel,
    warehouse: Warehouse,
) -> tuple[pd.DataFrame, dict]:
    """Reflection-70B option: the teacher rewrites each selected answer (guided, cached like every call).

    Rewrites that fail the format validator keep the plain answer and say why. The rewritten pairs
    are scored again and the scores recorded; they do not change which rows are selected.
    """
    from reflection_assets.assets.scoring import score
    from reflection_assets.teacher.cache import CallCache
    from reflection_assets.teacher.prompts import PROMPT_VERSION
    from reflection_assets.teacher.runner import reflect_rows
    from reflection_assets.teacher.settings import ReflectionSettings

    selection = selection.copy()
    selection["plain_output"] = selection["final_output"]
    selection["reflection_format"] = "not_selected"
    selected = selection["selected"].astype(bool)
    pairs = final_pairs(selection[selected])
    settings = ReflectionSettings(
        max_new_tokens=config.format_max_new_tokens,
        temperature=teacher.temperature, top_p=teacher.top_p, seed=teacher.seed,
        guided=teacher.guided_by_default,
        prompt_version=f"{PROMPT_VERSION}+{REFLECTION_FORMAT_PROMPT_VERSION}",
    )
    outcomes, stats = reflect_rows(pairs, "format", teacher, CallCache(warehouse.database), settings, log=context.log.info)
    by_id = outcomes.set_index("row_id")
    ok = by_id["outcome"] == "reflected"
    reasons = by_id["outcome"].where(ok, "kept_plain:" + by_id["outcome"] + ":" + by_id["error"].astype(str))
    index = selection.index[selected]
    selection.loc[index, "reflection_format"] = reasons.loc[selection.loc[index, "row_id"]].str.replace("reflected", "ok").values
    formatted_ids = set(by_id.index[ok])
    rewrite = selection["row_id"].isin(formatted_ids) & selected
    selection.loc[rewrite, "final_output"] = by_id.loc[selection.loc[rewrite, "row_id"], "new_output"].values

    scores, tokens = score(context, student, warehouse, final_pairs(selection[rewrite]), "reflection-format scores")
    scored = scores.set_index("row_id")
    for column in ("ifd_ppl", "rifd_ppl", "ifd_status", "rifd_status"):
        selection[f"formatted_{column}"] = selection["row_id"].map(scored[column]) if len(scored) else None
    numbers = {"format_rows": len(pairs), "format_ok": int(ok.sum()), "format_kept_plain": int((~ok).sum()),
               "format_calls_cached": stats.calls_cached, "teacher_calls_made": stats.calls_made, "tokens_computed": tokens}
    return selection, numbers


def final_pairs(frame: pd.DataFrame) -> list:
    """The final (instruction, input, output) of each selection row as scoring/teacher `Pair`s."""
    from reflection_assets.schema import Pair

    return [Pair(r.final_instruction, r.final_output, r.final_input, row_id=r.row_id) for r in frame.itertuples()]


def log_selection(context, mlflow: MlflowTracking, chosen: pd.DataFrame, counts: dict, config: SelectionConfig, plots: dict) -> dict:
    """One MLflow run with the counts, the plots and the selected data logged as a dataset input."""
    import mlflow as mlflow_lib

    with mlflow.start_run(context, "selected_dataset") as run:
        mlflow_lib.log_params(config.model_dump())
        mlflow_lib.log_metrics({k: float(v) for k, v in counts.items()})
        mlflow_lib.log_input(mlflow_lib.data.from_pandas(chosen, name="selected_dataset"), context="training")
        for name, png in plots.items():
            mlflow_lib.log_image(_png_image(png), name)
    return mlflow.link_metadata(run)


def _png_image(png: bytes):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(png))


class ArmConfig(dg.Config):
    seed: int = 0


@dg.asset(
    ins={name: ALL for name in ("raw_instructions", "raw_ifd_scores", "instruction_reflections", "instruction_ifd_scores", "response_reflections")},
    partitions_def=arm_partitions,
    metadata={"partition_expr": "arm"},
    group_name="arms",
    kinds={"duckdb", "python"},
    description="Training set of one arm: selective, reflected_all, ifd_topk, random (at the selective size) or full.",
)
def arm_datasets(
    context: dg.AssetExecutionContext,
    config: ArmConfig,
    raw_instructions: pd.DataFrame,
    raw_ifd_scores: pd.DataFrame,
    instruction_reflections: pd.DataFrame,
    instruction_ifd_scores: pd.DataFrame,
    response_reflections: pd.DataFrame,
    selected_dataset: pd.DataFrame,
    mlflow: MlflowTracking,
) -> dg.MaterializeResult[pd.DataFrame]:
    arm = context.partition_key
    inputs = ArmInputs(
        raw=raw_instructions,
        raw_scores=raw_ifd_scores,
        instruction_reflections=instruction_reflections,
        instruction_decisions=instruction_ifd_scores,
        response_reflections=response_reflections,
        selection=selected_dataset,
        seed=config.seed,
    )
    result = build_arm(arm, inputs)
    paths = export_arm(result.frame, exports_dir() / "arms" / arm, arm)
    numbers = {"rows": len(result.frame), "target": result.target, "candidates": result.candidates, "shortfall": result.shortfall}
    if result.shortfall:
        context.log.warning(f"arm {arm}: only {result.candidates} candidates for a target of {result.target}")
    link = mlflow.log(context, "arm_datasets", metrics=numbers, params={"arm": arm, "seed": config.seed})
    return dg.MaterializeResult(
        value=result.frame,
        metadata={
            **numeric_metadata(numbers),
            "preview": markdown_preview(result.frame, ["row_id", "source", "instruction", "output"]),
            **{f"export_{k}": dg.MetadataValue.path(str(v)) for k, v in paths.items()},
            **link,
        },
    )





REQUIRED_SELECTION_COLUMNS = [
    "dataset", "row_id", "instruction_choice", "response_choice", "final_instruction", "final_input",
    "final_output", "final_ifd", "final_rifd", "final_ifd_status", "final_rifd_status", "selected", "selection_reason",
]


@dg.asset_check(
    asset=selected_dataset,
    blocking=True,
    description="The selection has the expected columns and keeps at least one row (an empty selection trains nothing).",
)
def selected_dataset_usable(selected_dataset: pd.DataFrame) -> dg.AssetCheckResult:
    missing = [c for c in REQUIRED_SELECTION_COLUMNS if c not in selected_dataset.columns]
    selected = int(selected_dataset["selected"].astype(bool).sum()) if "selected" in selected_dataset else 0
    return dg.AssetCheckResult(
        passed=not missing and selected > 0,
        metadata={"missing_columns": dg.MetadataValue.json(missing), "rows_selected": selected},
    )
