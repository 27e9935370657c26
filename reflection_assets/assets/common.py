"""Small helpers the assets share: rows <-> pairs, score summaries, plots as metadata."""

import math

import dagster as dg
import pandas as pd

from reflection_assets.plots import histogram_png, png_markdown
from reflection_assets.schema import PARTITION_COLUMN, Pair

PARTITION_META = {"partition_expr": PARTITION_COLUMN}


def pairs_from_frame(frame: pd.DataFrame) -> list[Pair]:
    return [Pair.from_row(row) for row in frame.to_dict("records")]


def with_partition(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """Put the partition column first (the DuckDB IO manager deletes/inserts by it)."""
    frame = frame.copy()
    frame.insert(0, PARTITION_COLUMN, key)
    return frame


def ok_values(frame: pd.DataFrame, value: str, status: str) -> list[float]:
    """Scores whose status is ok; anything else is absent, never 0."""
    mask = frame[status] == "ok"
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


def histogram_metadata(values_by_label: dict[str, list[float]], title: str, xlabel: str) -> tuple[dg.MetadataValue, bytes]:
    """A histogram as markdown metadata (rendered in the UI) and the PNG bytes (for MLflow)."""
    finite = {k: [v for v in vs if math.isfinite(v)] for k, vs in values_by_label.items()}
    png = histogram_png(finite, title=title, xlabel=xlabel)
    return dg.MetadataValue.md(png_markdown(png, title)), png


def numeric_metadata(values: dict) -> dict[str, dg.MetadataValue]:
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or isinstance(value, str):
            out[key] = dg.MetadataValue.text(str(value))
        elif isinstance(value, int):
            out[key] = dg.MetadataValue.int(value)
        elif isinstance(value, float):
            out[key] = dg.MetadataValue.float(value)
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
