"""Small frame helpers shared by the selection rules: column checks, statuses, text cells."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from reflection_assets.scoring.statuses import OK

MISSING = "missing"  # status of a score row that is absent altogether
NAN = "nan"  # status of a score marked ok whose value is NaN: never trust it


def require(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    """Fail early with the frame's name: a KeyError deep in a merge says little."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{name} lacks columns {missing}; has {list(frame.columns)}")


def unique_rows(frame: pd.DataFrame, columns: list[str], name: str) -> pd.DataFrame:
    """The given columns, one row per row_id.

    Row ids are content hashes, so the same id read from two dataset partitions is the same
    content (and the same cached teacher call / score); keeping the first is lossless.
    """
    require(frame, columns, name)
    return frame[columns].drop_duplicates("row_id", keep="first").reset_index(drop=True)


def text(series: pd.Series) -> pd.Series:
    """Text cells with None/NaN as "" (an absent `input` is the empty string everywhere)."""
    return series.astype(object).where(series.notna(), "").astype(str)


def score_view(
    scores: pd.DataFrame, value_column: str, status_column: str, name: str
) -> tuple[pd.Series, pd.Series]:
    """(value, status) of one score, indexed by row_id, with non-ok values forced to NaN.

    A score that is not "ok" is never compared, and an "ok" score whose value is NaN gets
    the status "nan": both rules keep a failed score from silently passing a `< 1` filter.
    """
    frame = unique_rows(scores, ["row_id", value_column, status_column], name).set_index("row_id")
    value = pd.to_numeric(frame[value_column], errors="coerce").astype(float)
    status = text(frame[status_column].where(frame[status_column].notna(), MISSING))
    status = status.mask((status == OK) & value.isna(), NAN)
    return value.where(status == OK), status


def aligned_status(status: pd.Series, row_ids: pd.Series) -> np.ndarray:
    """Statuses at `row_ids`; a row with no score at all is "missing"."""
    return status.reindex(row_ids.to_numpy()).fillna(MISSING).astype(str).to_numpy()


def aligned_value(value: pd.Series, row_ids: pd.Series) -> np.ndarray:
    """Score values at `row_ids`; NaN where absent or not ok."""
    return value.reindex(row_ids.to_numpy()).astype(float).to_numpy()
