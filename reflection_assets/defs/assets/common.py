"""Small helpers the assets share: rows <-> pairs, score summaries, plots as metadata, the closing result."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from reflection_assets.plots import histogram_png, png_markdown
from reflection_assets.schema import PARTITION_COLUMN, Pair
from reflection_assets.scoring.statuses import OK
from resources.tracking import MlflowTracking

PARTITION_META = {"partition_expr": PARTITION_COLUMN}
# An input that reads every partition of its upstream asset (per-dataset or per-arm tables, fanned in).
ALL = dg.AssetIn(partition_mapping=dg.AllPartitionMapping())


def pairs_from_frame(frame: pd.DataFrame) -> list[Pair]:
    return [Pair.from_row(row) for row in frame.to_dict("records")]


def with_partition(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """Put the partition column first (the DuckDB IO manager deletes/inserts by it)."""
    frame = frame.copy()
    frame.insert(0, PARTITION_COLUMN, key)
    return frame


def ok_values(frame: pd.DataFrame, value: str, status: str) -> list[float]:
    """Scores whose status is ok; anything else is absent, never 0."""
    mask = frame[status] == OK
    return [float(v) for v in frame.loc[mask, value].tolist() if v is not None and not pd.isna(v)]


def score_summary(frame: pd.DataFrame, prefix: str = "") -> dict[str, float | int]:
    """Counts per status and the share of misaligned pairs (IFD >= 1) among scored ones."""
    out: dict[str, float | int] = {}
    for score, status in (("ifd_ppl", "ifd_status"), ("rifd_ppl", "rifd_status")):
        if status not in frame:
            continue
        for name, count in frame[status].astype(str).value_counts().items():
            out[f"{prefix}{status}_{name}"] = int(count)
        values = ok_values(frame, score, status)
        if values:
            out[f"{prefix}{score}_mean"] = float(sum(values) / len(values))
            out[f"{prefix}{score}_share_ge_1"] = float(sum(v >= 1 for v in values) / len(values))
    return out


def histogram_metadata(
    values_by_label: dict[str, list[float]], title: str, xlabel: str
) -> tuple[dg.MetadataValue, bytes]:
    """A histogram as markdown metadata (rendered in the UI) and the PNG bytes (for MLflow)."""
    finite = {k: [v for v in vs if math.isfinite(v)] for k, vs in values_by_label.items()}
    png = histogram_png(finite, title=title, xlabel=xlabel)
    return dg.MetadataValue.md(png_markdown(png, title)), png


def numeric_metadata(values: dict) -> dict[str, dg.MetadataValue]:
    """Numbers (numpy's too: a count read from a frame is often one) and text as metadata; other values are left out."""
    out = {}
    for key, value in values.items():
        if isinstance(value, (bool, np.bool_, str)):
            out[key] = dg.MetadataValue.text(str(value))
        elif isinstance(value, Integral):
            out[key] = dg.MetadataValue.int(int(value))
        elif isinstance(value, Real):
            out[key] = dg.MetadataValue.float(float(value))
    return out


def markdown_preview(frame: pd.DataFrame, columns: list[str], rows: int = 8, width: int = 80) -> dg.MetadataValue:
    if frame.empty:
        return dg.MetadataValue.md("(no rows)")
    shown = frame[[c for c in columns if c in frame]].head(rows).copy()
    for column in shown.columns:
        if shown[column].dtype == object or str(shown[column].dtype) == "string":
            shown[column] = (
                shown[column].astype(str).str.slice(0, width).str.replace("\n", " ").str.replace("|", "\\|")
            )
    return dg.MetadataValue.md(shown.to_markdown(index=False))


@dataclass(frozen=True)
class Histogram:
    """One histogram: shown in the asset's metadata under `key`, logged to MLflow as `artifact`."""

    key: str
    artifact: str
    values: dict[str, list[float]]
    title: str
    xlabel: str


def stage_result(
    context: dg.AssetExecutionContext,
    mlflow: MlflowTracking,
    name: str,
    frame: pd.DataFrame,
    *,
    numbers: dict[str, Any],
    params: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    histograms: Sequence[Histogram] = (),
    preview: list[str] | None = None,
    preview_rows: pd.DataFrame | None = None,
    artifacts: dict[str, bytes | str] | None = None,
    datasets: dict[str, pd.DataFrame] | None = None,
    check_results: Sequence[dg.AssetCheckResult] = (),
) -> dg.MaterializeResult:
    """How an asset ends: its counts as metadata and MLflow metrics, histograms in both, a preview.

    `numbers` become metadata (numbers and text) and, the numeric ones with `rows`, MLflow metrics;
    `metadata` is added as given (values MLflow does not need; it wins over a number of the same name);
    `artifacts` and `datasets` go to MLflow only. The preview shows `preview` columns of `preview_rows`
    (default: the frame).
    """
    plots = [(h, *histogram_metadata(h.values, h.title, h.xlabel)) for h in histograms]
    metrics = {k: float(v) for k, v in numbers.items() if isinstance(v, Real)}
    link = mlflow.log(
        context, name, metrics={"rows": len(frame), **metrics}, params=params,
        artifacts={**(artifacts or {}), **{h.artifact: png for h, _, png in plots}}, datasets=datasets,
    )
    shown = frame if preview_rows is None else preview_rows
    return dg.MaterializeResult(
        value=frame,
        metadata={
            "rows": dg.MetadataValue.int(len(frame)),
            **numeric_metadata(numbers),
            **(metadata or {}),  # given as is: over a number of the same name (e.g. a count and its list)
            **{h.key: plot for h, plot, _ in plots},
            **({"preview": markdown_preview(shown, preview)} if preview else {}),
            **link,
        },
        check_results=list(check_results) or None,
    )


ACCOUNTED = "rows_accounted_for"
SCORES_VALID = "scores_in_range"


def accounting_check(asset: str, frame: pd.DataFrame, raw: pd.DataFrame) -> dg.AssetCheckResult:
    """Every raw row of the partition appears exactly once in this stage's output."""
    ids = frame["row_id"].tolist()
    expected = set(raw["row_id"])
    missing, extra = expected - set(ids), set(ids) - expected
    duplicated = len(ids) - len(set(ids))
    return dg.AssetCheckResult(
        check_name=ACCOUNTED,
        asset_key=asset,
        passed=not missing and not extra and not duplicated,
        metadata={"raw_rows": len(expected), "rows": len(ids), "missing": len(missing), "extra": len(extra),
                  "duplicated": duplicated},
    )


def range_check(asset: str, frame: pd.DataFrame, pairs: list[tuple[str, str]]) -> dg.AssetCheckResult:
    """Scores with status ok are finite and positive; scores with any other status are absent."""
    problems: dict[str, int] = {}
    for value, status in pairs:
        if value not in frame or status not in frame:
            continue
        numbers = pd.to_numeric(frame[value], errors="coerce")
        ok = frame[status].astype(str) == OK
        problems[f"{value}_bad_ok"] = int(
            (ok & ~(numbers.notna() & (numbers > 0) & numbers.abs().lt(float("inf")))).sum()
        )
        problems[f"{value}_present_not_ok"] = int((~ok & numbers.notna()).sum())
    return dg.AssetCheckResult(
        check_name=SCORES_VALID, asset_key=asset, passed=not any(problems.values()), metadata=problems
    )


def stage_checks(asset: str, scores: bool = False) -> list[dg.AssetCheckSpec]:
    specs = [
        dg.AssetCheckSpec(ACCOUNTED, asset=asset, description="Every raw row of the partition appears exactly once.")
    ]
    if scores:
        specs.append(
            dg.AssetCheckSpec(SCORES_VALID, asset=asset, description="ok scores are finite and > 0; others are absent.")
        )
    return specs
