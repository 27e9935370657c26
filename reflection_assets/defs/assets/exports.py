"""What every export carries beside its rows: decontamination against the benchmarks, and the dataset card.

The work is in `selection.decontamination` and `selection.card`; this module gathers what they need
from the run (the evaluation's default items, the dataset registry, the resources, the ablation table).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from reflection_assets.database import table_exists
from reflection_assets.defs.assets.evaluation import EvalConfig
from reflection_assets.evaluation.runner import build_items
from reflection_assets.evaluation.suites import EvalDataError
from reflection_assets.ingest.registry import UnknownDatasetError, resolve_source
from reflection_assets.paths import shown_path
from reflection_assets.selection.card import CARD_NAME, CardFacts, SourceFile, source_license, source_sha256, write_card
from reflection_assets.selection.decontamination import (
    CandidateDecontamination,
    ContaminationIndex,
    Decontamination,
    DecontaminationError,
    build_index,
    decontaminate,
    evaluation_benchmark,
)
from reflection_assets.selection.export import export_arm, parquet_names
from reflection_assets.teacher.prompts import PROMPT_VERSION
from resources.student import StudentModel
from resources.teacher import Teacher
from resources.warehouse import Warehouse

DECONTAMINATED_CHECK = "export_decontaminated"
ABLATION_TABLE = "ablation_report"


def decontamination_check_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        DECONTAMINATED_CHECK,
        asset=asset,
        description="No exported row shares a word n-gram with an evaluation item or a REFLECTION_DECONTAMINATE "
        "benchmark (WARN: overlapping rows were found and dropped from the export; the metadata names them).",
    )


def eval_file_field() -> Any:
    """The run parameter an export's decontamination reads its evaluation items from (selection and arms)."""
    return Field(
        default="",
        description="held-out pairs (jsonl) whose items the export is decontaminated against, as eval_scores' "
        "eval_file; '': eval_scores' default ($REFLECTION_EVAL_FILE or the demo's eval set)",
    )


def contamination_index(eval_file: str = "") -> ContaminationIndex:
    """The n-grams of eval_scores' items (from `eval_file`, '': its default), plus the user's benchmark files."""
    try:
        items = build_items(EvalConfig(eval_file=eval_file).settings(template="chat"))  # the template changes no item
        return build_index(evaluation_benchmark(items))
    except (DecontaminationError, EvalDataError) as error:  # the user's file or setting: no traceback, no retry
        raise dg.Failure(f"decontamination: {error}", allow_retries=False) from None


@dataclass(frozen=True)
class Export:
    """An export's rows on disk, after decontamination, and where they went."""

    decontamination: Decontamination
    out_dir: Path
    paths: dict[str, Path]
    location: str = ""  # where the export is read from: out_dir, or its URI once published (shared stores)

    @property
    def kept(self) -> pd.DataFrame:
        return self.decontamination.kept

    def shown(self, path: Path) -> str:
        """`path` (under out_dir) where readers find it."""
        if not self.location:
            return str(path)
        return f"{self.location.rstrip('/')}/{path.relative_to(self.out_dir).as_posix()}"

    def metadata(self) -> dict[str, dg.MetadataValue]:
        return {
            **decontamination_metadata(self.decontamination),
            **{f"export_{k}": dg.MetadataValue.path(self.shown(v)) for k, v in self.paths.items()},
            "export_card": dg.MetadataValue.path(self.shown(self.out_dir / CARD_NAME)),
        }


def decontaminated_export(
    context: dg.AssetExecutionContext,
    rows: pd.DataFrame,
    out_dir: Path,
    name: str,
    system: str | None = None,
    candidates: CandidateDecontamination | None = None,
    eval_file: str = "",
    location: str = "",
) -> Export:
    """Drop the rows that overlap a benchmark item (named in the log), then write the rest in every form.

    `candidates`: the filter an arm was drawn through (its index is reused); the rows it dropped are
    reported with the export's own. `eval_file`: where the evaluation's items come from ('': eval_scores' default).
    `location`: where readers find the export once published ('': out_dir itself).
    """
    if candidates is None:
        decontaminated = decontaminate(rows, contamination_index(eval_file))
    else:
        decontaminated = candidates.merged(decontaminate(rows, candidates.index))
    if decontaminated.dropped:
        context.log.warning(
            f"{name}: {decontaminated.dropped} rows overlap a benchmark item and are left out of the export: "
            f"{decontaminated.per_benchmark()}"
        )
    return Export(decontaminated, out_dir, export_arm(decontaminated.kept, out_dir, name, system=system), location)


def decontamination_metadata(result: Decontamination) -> dict[str, dg.MetadataValue]:
    return {
        "rows_decontaminated": dg.MetadataValue.int(result.dropped),
        "decontamination_ngram": dg.MetadataValue.int(result.n),
        "decontamination_benchmarks": dg.MetadataValue.json(result.benchmarks),
        "decontaminated_rows": dg.MetadataValue.json(result.records()),
    }


def decontamination_check(asset: str, result: Decontamination) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=DECONTAMINATED_CHECK,
        asset_key=asset,
        passed=result.dropped == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rows_decontaminated": result.dropped,
            "per_benchmark": dg.MetadataValue.json(result.per_benchmark()),
            "matches": dg.MetadataValue.json(result.records()),
        },
    )


def decontamination_summary(result: Decontamination) -> dict[str, Any]:
    return {
        "n": result.n,
        "benchmarks": result.benchmarks,
        "rows_decontaminated": result.dropped,
        "per_benchmark": result.per_benchmark(),
        "matches": result.records(),
    }


def source_files(warehouse: Warehouse, rows_per_dataset: dict[str, int]) -> list[SourceFile]:
    """Each dataset partition's registered source with its hash and stated license."""
    out = []
    for dataset, rows in sorted(rows_per_dataset.items()):
        try:
            source = resolve_source(warehouse.store, dataset).source
        except UnknownDatasetError:  # a table written without the registry (tests, hand-made warehouses)
            out.append(SourceFile(dataset, "(no registered source)", "", None, rows))
            continue
        shown = shown_path(source) if Path(source).exists() else source
        out.append(SourceFile(dataset, shown, source_sha256(source), source_license(source), rows))
    return out


def ablation_verdict(warehouse: Warehouse) -> str | None:
    """The primary comparison of the ablation report in the warehouse, when one exists (an earlier run's)."""
    with warehouse.connection(read_only=True) as conn:
        if not table_exists(conn, ABLATION_TABLE):
            return None
        rows = conn.execute(f"SELECT * FROM {ABLATION_TABLE} WHERE role = 'primary'").df()
    if rows.empty:
        return None
    lines = [
        f"- {r.get('model')} vs {r.get('reference')} on {r.get('suite')} ({r.get('metric')}): "
        f"delta {r.get('delta')}, interval [{r.get('ci_low')}, {r.get('ci_high')}] over training runs and items "
        f"(seeds {r.get('model_seeds')} / {r.get('reference_seeds')}): **{r.get('verdict')}**"
        for r in rows.to_dict("records")
    ]
    return "The ablation report in the warehouse when this export was written (its primary comparison):\n\n" + (
        "\n".join(lines)
    )


def student_identity(student: StudentModel) -> str:
    return f"{student.served_model} at {student.base_url}" if student.is_served else student.model


@dataclass(frozen=True)
class ExportRun:
    """What a card says about the run that wrote it."""

    context: dg.AssetExecutionContext
    teacher: Teacher
    student: StudentModel
    warehouse: Warehouse


def write_export_card(
    run: ExportRun,
    out_dir: Path,
    name: str,
    *,
    title: str,
    rows: int,
    rows_per_dataset: dict[str, int],
    selection_rule: str,
    thresholds: dict[str, Any],
    decision_counts: dict[str, int],
    decontamination: Decontamination,
    mlflow_link: dict[str, dg.MetadataValue],
) -> Path:
    """README.md beside the export's files, from the counts the asset stores; written last, so the export is
    published (shared stores) from here."""
    mlflow_run = mlflow_link.get("mlflow_run")
    facts = CardFacts(
        title=title,
        rows=rows,
        sources=source_files(run.warehouse, rows_per_dataset),
        teacher=run.teacher.cache_identity(),
        student=student_identity(run.student),
        prompt_version=PROMPT_VERSION,
        selection_rule=selection_rule,
        thresholds=thresholds,
        decision_counts=decision_counts,
        decontamination=decontamination_summary(decontamination),
        ablation_verdict=ablation_verdict(run.warehouse),
        dagster_run=run.context.run.run_id,
        mlflow_run=str(mlflow_run.value) if mlflow_run is not None else None,
        data_files=parquet_names(name),
    )
    card = write_card(out_dir, facts)
    published = run.warehouse.publish_export(out_dir)
    if published != str(out_dir):
        run.context.log.info(f"{name}: export published to {published}")
    return card


def rows_per_dataset(row_ids: pd.Series, datasets: pd.DataFrame) -> dict[str, int]:
    """Exported rows per dataset partition (`datasets`: row_id, dataset; a row id found twice counts once)."""
    lookup = datasets.drop_duplicates("row_id").set_index("row_id")["dataset"]
    found = row_ids.astype(str).map(lookup).dropna()
    return {str(k): int(v) for k, v in found.value_counts().sort_index().items()}
