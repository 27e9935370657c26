"""Reflection-70B format applied to a frame of pairs (the format itself: `reflection_assets.reflection70b`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reflection_assets.reflection70b import validate_reflection_format
from reflection_assets.scoring.statuses import OK
from reflection_assets.selection.frames import require, text
from reflection_assets.teacher.outcomes import REFLECTED


def apply_reflection_format(
    pairs: pd.DataFrame,
    rewrites: pd.DataFrame,
    *,
    text_column: str = "new_output",
    require_reflection: bool = False,
) -> pd.DataFrame:
    """`pairs` with `output` replaced by its validated reflection-format rewrite where there is one.

    pairs: any frame with row_id and output (an arm frame, the selection's final pairs renamed).
    rewrites: teacher outcomes: row_id, outcome, `text_column`.
    Adds plain_output (the answer before rewriting), reflection_format (bool) and
    reflection_format_reason: "ok", "rewrite_missing", "rewrite_<outcome>" or "invalid:<why>".
    """
    require(pairs, ["row_id", "output"], "pairs")
    require(rewrites, ["row_id", "outcome", text_column], "rewrites")
    by_id = rewrites.drop_duplicates("row_id").set_index("row_id")
    ids = pairs["row_id"].to_numpy()
    outcome = by_id["outcome"].reindex(ids)
    texts = text(by_id[text_column].reindex(ids)).to_numpy()
    reasons = []
    for out, candidate in zip(outcome.to_numpy(), texts):
        if pd.isna(out):
            reasons.append("rewrite_missing")
        elif out != REFLECTED:
            reasons.append(f"rewrite_{out}")
        else:
            ok, why = validate_reflection_format(candidate, require_reflection)
            reasons.append(OK if ok else f"invalid:{why}")
    good = np.array([r == OK for r in reasons], dtype=bool)
    result = pairs.copy()
    result["plain_output"] = text(pairs["output"]).to_numpy()
    result["output"] = np.where(good, texts, result["plain_output"].to_numpy())
    result["reflection_format"] = good
    result["reflection_format_reason"] = reasons
    return result
