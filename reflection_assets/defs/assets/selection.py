"""Selection across datasets and the per-arm training sets.

`selected_dataset` keeps every scored row with `selected` and the reason, so the decision is
auditable; the exports hold only the selected rows. The arms are the method and its baselines at
the selective set's size.

Every export is decontaminated (`assets.exports`): a selected row that shares a word n-gram with an
evaluation item or a named benchmark stays in the selection table, named in its `contamination`
column, and is left out of the exported files; an arm's table itself holds no such row, because
lora_checkpoint trains on that table.
"""

from dataclasses import asdict
from typing import Any, Literal, Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from reflection_assets.defs.assets.common import ALL, Histogram, ok_values, stage_result
from reflection_assets.defs.assets.exports import (
    DECONTAMINATED_CHECK,
    Export,
    ExportRun,
    contamination_index,
    decontaminated_export,
    decontamination_check,
    decontamination_check_spec,
    eval_file_field,
    rows_per_dataset,
    write_export_card,
)
from reflection_assets.defs.assets.scoring import score
from reflection_assets.defs.partitions import ARM_PARTITION_EXPR, arm_and_seed, arm_partitions
from reflection_assets.documented import mirrored
from reflection_assets.reflection70b import REFLECTION_SYSTEM_PROMPT
from reflection_assets.selection import (
    ARM_COLUMNS,
    ArmInputs,
    SelectionSettings,
    arm_rule,
    build_arm,
    decision_counts,
    decision_counts_dict,
    select_rows,
)
from reflection_assets.selection.decontamination import CONTAMINATION_COLUMN, CandidateDecontamination
from reflection_assets.selection.outcome import empty_selection_reason, selected_count, selection_problems
from reflection_assets.selection.reflection_format import rewrite_in_reflection_format
from reflection_assets.selection.scope import SelectionScope, in_datasets, selected_pairs, selection_scope
from reflection_assets.teacher.cache import CallCache
from resources.student import StudentModel
from resources.teacher import Teacher
from resources.tracking import MlflowTracking
from resources.warehouse import Warehouse

SELECTED_COLUMNS = ["row_id", "final_instruction", "final_input", "final_output", "final_ifd", "final_rifd"]
SELECTION_RULE = "Rows whose reflected answer won and whose final pair has IFD < 1 and r-IFD < 1 (as published)."


class SelectionConfig(dg.Config):
    """The published filter by default; the extensions are off unless set here."""

    datasets: list[str] = Field(
        default=[], description="dataset partitions to select over ([]: every partition, as automation does)"
    )

    # The filter's knobs: SelectionSettings' defaults and meaning.
    max_ifd: float = mirrored(SelectionSettings, "max_ifd")
    max_rifd: float = mirrored(SelectionSettings, "max_rifd")
    extension_keep_lost_answers: bool = mirrored(SelectionSettings, "extension_keep_lost_answers")
    extension_budget_fraction: Optional[float] = mirrored(SelectionSettings, "extension_budget_fraction")
    extension_budget_count: Optional[int] = mirrored(SelectionSettings, "extension_budget_count")
    response_style: Literal["plain", "reflection"] = Field(
        default="plain",
        description="reflection: the teacher rewrites each selected answer in the Reflection-70B format "
        "(<thinking>, <reflection>, <output>); a rewrite that fails the format check keeps the plain answer",
    )
    format_max_new_tokens: int = Field(
        default=384, description="tokens the teacher may write per rewrite (response_style reflection)"
    )
    eval_file: str = eval_file_field()

    def settings(self) -> SelectionSettings:
        return SelectionSettings(
            max_ifd=self.max_ifd,
            max_rifd=self.max_rifd,
            extension_keep_lost_answers=self.extension_keep_lost_answers,
            extension_budget_fraction=self.extension_budget_fraction,
            extension_budget_count=self.extension_budget_count,
        )


@dg.asset(
    ins={"response_scores": ALL, "raw_ifd_scores": ALL},
    group_name="selection",
    kinds={"duckdb", "python"},
    description=SELECTION_RULE,
    check_specs=[decontamination_check_spec("selected_dataset")],
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
):  # no return annotation: with check_specs the op has several outputs
    scope, settings, selection, style_numbers = checked_selection(
        context, config, response_scores, raw_ifd_scores, teacher, student, warehouse
    )
    counts = decision_counts_dict(selection)
    empty_reason = empty_selection_reason(selection)
    if empty_reason:  # a result, not an error: say why, and let the arms skip with this reason
        context.log.warning(f"{empty_reason}; the arms sized to the selection will be skipped. Decisions: {counts}")
    chosen = selected_pairs(selection)
    system = REFLECTION_SYSTEM_PROMPT if config.response_style == "reflection" else None
    out_dir = warehouse.exports_folder("selected")
    export = decontaminated_export(
        context, chosen, out_dir, "selected", system=system, eval_file=config.eval_file,
        location=warehouse.export_location(out_dir),
    )
    selection = selection.assign(**{CONTAMINATION_COLUMN: export.decontamination.labels(selection["row_id"])})
    result = stage_result(
        context, mlflow, "selected_dataset", selection,
        numbers={**counts, **style_numbers, "rows_decontaminated": export.decontamination.dropped},
        params=config.model_dump(),
        metadata=selection_metadata(scope, selection, chosen, export, config.response_style, empty_reason),
        histograms=selection_histograms(scope.raw_scores, selection),
        preview=SELECTED_COLUMNS,
        preview_rows=selection[selection["selected"].astype(bool)],
        datasets={"selected_dataset": export.kept},
        check_results=[decontamination_check("selected_dataset", export.decontamination)],
    )
    # The card names the MLflow run, so it is written once the run is logged (its path is in the metadata).
    write_export_card(
        ExportRun(context, teacher, student, warehouse), export.out_dir, "selected",
        **selection_card(export, selection, settings, config.response_style, counts), mlflow_link=result.metadata,
    )
    return result


def checked_selection(
    context: dg.AssetExecutionContext,
    config: SelectionConfig,
    response_scores: pd.DataFrame,
    raw_ifd_scores: pd.DataFrame,
    teacher: Teacher,
    student: StudentModel,
    warehouse: Warehouse,
) -> tuple[SelectionScope, Any, pd.DataFrame, dict[str, Any]]:
    """(scope, settings, selection in the asked response style, its numbers), or the run fails with the reason:
    a config that contradicts itself, partitions with no scores, a malformed selection (stopped before it is
    stored: a check after the fact would not stop other runs)."""
    try:
        settings = config.settings()
        scope = selection_scope(response_scores, raw_ifd_scores, config.datasets)
    except ValueError as error:
        raise dg.Failure(f"selection config: {error}", allow_retries=False) from None
    context.log.info(f"selecting over {scope.description()} ({len(scope.response_scores)} rows)")
    selection = select_rows(scope.response_scores, settings)
    selection, style_numbers = in_response_style(context, config, selection, teacher, student, warehouse)
    problems = selection_problems(selection)
    if problems:
        raise dg.Failure(f"malformed selection: {'; '.join(problems)}", allow_retries=False,
                         metadata={"problems": dg.MetadataValue.json(problems)})
    return scope, settings, selection, style_numbers


def selection_card(
    export: Export, selection: pd.DataFrame, settings: Any, response_style: str, counts: dict[str, int]
) -> dict[str, Any]:
    """The selected export's card: its rows, the rule and thresholds, the decisions, the decontamination."""
    return dict(
        title="Selective Reflection-Tuning: selected dataset", rows=len(export.kept),
        rows_per_dataset=rows_per_dataset(export.kept["row_id"], selection[["row_id", "dataset"]]),
        selection_rule=SELECTION_RULE, thresholds={**asdict(settings), "response_style": response_style},
        decision_counts=counts, decontamination=export.decontamination,
    )


def selection_metadata(
    scope: SelectionScope, selection: pd.DataFrame, chosen: pd.DataFrame, export: Export, response_style: str,
    empty_reason: str,
) -> dict[str, Any]:
    """What the selection read, kept and exported, its decisions' counts, and why it is empty when it is."""
    return {
        "datasets_read": dg.MetadataValue.json(scope.datasets),
        "scope": dg.MetadataValue.text(f"selected over {scope.description()}"),
        "rows_scored": dg.MetadataValue.int(len(selection)),
        "rows_selected": dg.MetadataValue.int(len(chosen)),
        "rows_exported": dg.MetadataValue.int(len(export.kept)),
        "decision_counts": dg.MetadataValue.md(decision_counts(selection).to_markdown(index=False)),
        "response_style": dg.MetadataValue.text(response_style),
        "empty_reason": dg.MetadataValue.text(empty_reason),
        **export.metadata(),
    }


def in_response_style(
    context: dg.AssetExecutionContext,
    config: SelectionConfig,
    selection: pd.DataFrame,
    teacher: Teacher,
    student: StudentModel,
    warehouse: Warehouse,
) -> tuple[pd.DataFrame, dict]:
    """The selected answers in the config's response style, and what that cost (teacher calls, tokens)."""
    if config.response_style != "reflection":
        # Selection itself reads scored tables only: no teacher call, no forward pass (the metadata says so).
        return selection, {"teacher_calls_made": 0, "tokens_computed": 0}
    return rewrite_in_reflection_format(
        selection, teacher, CallCache(warehouse.store),
        lambda pairs, label: score(context, student, warehouse, pairs, label),
        max_new_tokens=config.format_max_new_tokens, log=context.log.info,
    )


def selection_histograms(raw_scores: pd.DataFrame, selection: pd.DataFrame) -> list[Histogram]:
    """IFD and r-IFD of the raw pairs beside those of the selected final pairs."""
    chosen = selection[selection["selected"].astype(bool)]
    return [
        Histogram(
            f"{key}_histogram", f"{key}_raw_vs_selected.png",
            {"raw": ok_values(raw_scores, f"{key}_ppl", f"{key}_status"),
             "selected": [float(v) for v in chosen[f"final_{key}"].dropna()]},
            f"{label}: raw vs selected", label,
        )
        for key, label in (("ifd", "IFD"), ("rifd", "r-IFD"))
    ]


class ArmConfig(dg.Config):
    seed: int = Field(default=0, description="added to the seed partition: sampled arms draw with seed + partition")
    eval_file: str = eval_file_field()


@dg.asset(
    ins={
        name: ALL
        for name in (
            "raw_instructions",
            "raw_ifd_scores",
            "instruction_reflections",
            "instruction_ifd_scores",
            "response_reflections",
        )
    },
    partitions_def=arm_partitions,
    metadata={"partition_expr": ARM_PARTITION_EXPR},
    group_name="arms",
    kinds={"duckdb", "python"},
    description="Training set of one arm and seed: selective, reflected_all, ifd_topk, random, longest (at the "
    "selective size) or full; the seed draws the sampled arms (random, reflected_all). Each arm is drawn from "
    "candidates that overlap no benchmark item, so a decontaminated arm keeps the size of the others "
    "(rows_decontaminated: the candidates left out).",
    check_specs=[decontamination_check_spec("arm_datasets")],
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
    teacher: Teacher,
    student: StudentModel,
    warehouse: Warehouse,
):  # no return annotation: with check_specs the op has several outputs
    arm, replicate = arm_and_seed(context.partition_key)
    seed = config.seed + replicate
    if arm != "full" and not selected_count(selected_dataset):  # sized to the selection: nothing to build
        return skipped_arm(context, arm, replicate, empty_selection_reason(selected_dataset))
    scope = sorted(selected_dataset["dataset"].unique()) if "dataset" in selected_dataset else []
    frames = [raw_instructions, raw_ifd_scores, instruction_reflections, instruction_ifd_scores, response_reflections]
    inputs, candidates = arm_inputs(in_datasets(frames, scope), selected_dataset, seed, config.eval_file)
    result = build_arm(arm, inputs)
    if result.shortfall:
        context.log.warning(f"arm {arm}: only {result.candidates} candidates for a target of {result.target}")
    out_dir = warehouse.exports_folder(f"arms/{arm}/seed{replicate}")
    export = decontaminated_export(
        context, result.frame, out_dir, arm, candidates=candidates, location=warehouse.export_location(out_dir)
    )
    numbers = {"target": result.target, "candidates": result.candidates, "shortfall": result.shortfall}
    outcome = stage_result(
        context, mlflow, "arm_datasets", export.kept.assign(seed=str(replicate)),
        numbers={**numbers, "rows_decontaminated": export.decontamination.dropped},
        params={"arm": arm, "seed": seed},
        metadata={"seed": dg.MetadataValue.int(seed), "datasets_read": dg.MetadataValue.json(scope),
                  **export.metadata()},
        preview=["row_id", "source", "instruction", "output"],
        check_results=[decontamination_check("arm_datasets", export.decontamination)],
    )
    write_export_card(
        ExportRun(context, teacher, student, warehouse), export.out_dir, arm,
        **arm_card(arm, replicate, seed, export, inputs.raw, numbers), mlflow_link=outcome.metadata,
    )
    return outcome


def arm_inputs(
    frames: list[pd.DataFrame], selected_dataset: pd.DataFrame, seed: int, eval_file: str
) -> tuple[ArmInputs, CandidateDecontamination]:
    """What an arm draws from: the dataset partitions the selection read (not every partition), the
    candidates decontaminated first, so a decontaminated arm keeps the size of the others; they are dropped
    from the table itself, not only from the files: lora_checkpoint trains on this table."""
    raw, raw_scores, reflections, decisions, answers = frames
    candidates = CandidateDecontamination(contamination_index(eval_file))
    inputs = ArmInputs(raw, raw_scores, reflections, decisions, answers, selected_dataset, seed, usable=candidates)
    return inputs, candidates


def arm_card(
    arm: str, replicate: int, seed: int, export: Export, raw: pd.DataFrame, numbers: dict[str, int]
) -> dict[str, Any]:
    """An arm export's card: its rows by dataset and source, the arm's rule, the decontamination."""
    sources = export.kept["source"].value_counts().sort_index().items()
    return dict(
        title=f"Selective Reflection-Tuning ablation arm: {arm} (seed {replicate})", rows=len(export.kept),
        rows_per_dataset=rows_per_dataset(export.kept["row_id"], raw[["row_id", "dataset"]]),
        selection_rule=f"Arm {arm}: {arm_rule(arm)}", thresholds={"arm": arm, "seed": seed, **numbers},
        decision_counts={f"source_{k}": int(v) for k, v in sources}, decontamination=export.decontamination,
    )


def skipped_arm(context: dg.AssetExecutionContext, arm: str, replicate: int, reason: str) -> dg.MaterializeResult:
    """No rows for the arm (the IO manager replaces its old ones, so nothing downstream reads a stale
    table) and the reason it is empty."""
    context.log.warning(f"arm {arm} (seed {replicate}): skipped, {reason}")
    return dg.MaterializeResult(
        value=pd.DataFrame({c: pd.Series(dtype="string") for c in [*ARM_COLUMNS, "seed"]}),
        metadata={"rows": dg.MetadataValue.int(0), "skipped_reason": dg.MetadataValue.text(reason),
                  "rows_decontaminated": dg.MetadataValue.int(0)},
        check_results=[dg.AssetCheckResult(check_name=DECONTAMINATED_CHECK, asset_key="arm_datasets", passed=True,
                                           metadata={"rows_decontaminated": 0, "skipped_reason": reason})],
    )


@dg.asset_check(
    asset=selected_dataset,
    blocking=True,
    description="The selection has the expected columns, one decision per row, and text for every selected row.",
)
def selected_dataset_well_formed(selected_dataset: pd.DataFrame) -> dg.AssetCheckResult:
    problems = selection_problems(selected_dataset)
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"problems": dg.MetadataValue.json(problems), "rows": len(selected_dataset)},
    )


@dg.asset_check(
    asset=selected_dataset,
    blocking=False,
    description="At least one row was selected (when none is, the arms sized to it skip, with the reason).",
)
def selected_dataset_not_empty(selected_dataset: pd.DataFrame) -> dg.AssetCheckResult:
    selected = selected_count(selected_dataset)
    return dg.AssetCheckResult(
        passed=selected > 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rows_selected": selected,
            "empty_reason": dg.MetadataValue.text(empty_selection_reason(selected_dataset)),
        },
    )
