"""Final selection (step 5): the published rule, and two extensions that are off by default.

Published (the authors' released code): keep a row only when its reflected answer won AND the
final pair has IFD < 1 and r-IFD < 1 (strict; IFD exactly 1 fails; a score that is not ok
fails). Every row stays in the output with `selected` and `selection_reason`, so the decision
counts and the lineage query can explain each row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reflection_assets.documented import documented
from reflection_assets.scoring.statuses import OK
from reflection_assets.selection.columns import ORIGINAL, RESPONSE_DECISION_COLUMNS
from reflection_assets.selection.frames import MISSING, require
from reflection_assets.teacher.outcomes import REFLECTED

SELECTED_ANSWER_WON = "selected:answer_won"
SELECTED_KEEP_LOST = "selected:extension_keep_lost_answers"
NOT_SELECTED_ANSWER_LOST = "answer_lost"
NOT_SELECTED_BUDGET = "extension_budget_exceeded"


@dataclass(frozen=True)
class SelectionSettings:
    """Run parameters of selection; the defaults are the published method.

    A budget keeps the eligible rows that pass the filter ranked by the final pair's IFD, highest
    first (Cherry-style: the hardest pairs for the student), ties broken by row_id ascending so
    reruns agree. At most one of the two budgets may be set.
    """

    max_ifd: float = documented(1.0, "keep rows whose final IFD is below this (strict; the published filter: 1)")
    max_rifd: float = documented(1.0, "keep rows whose final r-IFD is below this (strict; the published filter: 1)")
    extension_keep_lost_answers: bool = documented(
        False,
        "extension: also keep rows whose answer reflection lost, when they pass the same filter (the branches "
        "commented out in the authors' code)",
    )
    extension_budget_fraction: float | None = documented(
        None,
        "extension: keep at most this fraction (0, 1] of all rows given to selection, rounded down, the highest "
        "IFD first (as the authors' 2% / 5% subsets); unset: no budget",
    )
    extension_budget_count: int | None = documented(
        None, "extension: keep at most this many rows, the highest IFD first; unset: no budget"
    )

    def __post_init__(self) -> None:
        if self.extension_budget_fraction is not None and self.extension_budget_count is not None:
            raise ValueError("set extension_budget_fraction or extension_budget_count, not both")
        fraction = self.extension_budget_fraction
        if fraction is not None and not 0.0 < fraction <= 1.0:
            raise ValueError(f"extension_budget_fraction must be in (0, 1], got {fraction}")
        if self.extension_budget_count is not None and self.extension_budget_count < 0:
            raise ValueError(f"extension_budget_count must be >= 0, got {self.extension_budget_count}")

    def budget(self, n_rows: int) -> int | None:
        """How many rows the budget keeps out of a dataset of n_rows; None when no budget."""
        if self.extension_budget_count is not None:
            return self.extension_budget_count
        if self.extension_budget_fraction is not None:
            return math.floor(n_rows * self.extension_budget_fraction)
        return None


def filter_reasons(decisions: pd.DataFrame, settings: SelectionSettings) -> np.ndarray:
    """Per row "ok" when the final pair passes the filter, else the first failing check."""
    ifd = decisions["final_ifd"].astype(float).to_numpy()
    rifd = decisions["final_rifd"].astype(float).to_numpy()
    ifd_st = decisions["final_ifd_status"].fillna(MISSING).astype(str).to_numpy().astype(object)
    rifd_st = decisions["final_rifd_status"].fillna(MISSING).astype(str).to_numpy().astype(object)
    conditions = [
        ifd_st != OK,
        rifd_st != OK,
        np.isnan(ifd),
        np.isnan(rifd),
        ~(ifd < settings.max_ifd),
        ~(rifd < settings.max_rifd),
    ]
    reasons = [
        "score_not_ok:final_ifd:" + ifd_st,
        "score_not_ok:final_rifd:" + rifd_st,
        "score_not_ok:final_ifd:nan",
        "score_not_ok:final_rifd:nan",
        "ifd_not_below_max",
        "rifd_not_below_max",
    ]
    shape = ifd.shape
    reasons = [np.broadcast_to(np.asarray(r, dtype=object), shape) for r in reasons]
    return np.select(conditions, reasons, default=OK).astype(object)


def budget_ranks(decisions: pd.DataFrame, candidates: np.ndarray) -> np.ndarray:
    """1-based rank among `candidates` by final IFD descending, row_id ascending; 0 elsewhere."""
    order = pd.DataFrame(
        {
            "pos": np.arange(len(decisions)),
            "ifd": decisions["final_ifd"].astype(float).to_numpy(),
            "row_id": decisions["row_id"].astype(str).to_numpy(),
        }
    )[candidates]
    order = order.sort_values(["ifd", "row_id"], ascending=[False, True], kind="mergesort")
    ranks = np.zeros(len(decisions), dtype=np.int64)
    ranks[order["pos"].to_numpy()] = np.arange(1, len(order) + 1)
    return ranks


def select_rows(decisions: pd.DataFrame, settings: SelectionSettings | None = None) -> pd.DataFrame:
    """Every stage-2 row, with passes_filter, filter_reason, budget_rank, selected, selection_reason.

    selection_reason is "selected:answer_won", "selected:extension_keep_lost_answers",
    "answer_lost", "filter:<filter_reason>" or "extension_budget_exceeded" (checked in that
    order: eligibility, filter, budget).
    """
    settings = settings or SelectionSettings()
    require(decisions, RESPONSE_DECISION_COLUMNS[:12], "decisions")
    out = decisions.reset_index(drop=True).copy()
    reason_filter = filter_reasons(out, settings)
    passes = reason_filter == OK
    won = (out["response_choice"] == REFLECTED).to_numpy()
    eligible = won | settings.extension_keep_lost_answers
    candidates = eligible & passes
    ranks = budget_ranks(out, candidates)
    budget = settings.budget(len(out))
    within = candidates if budget is None else candidates & (ranks <= budget)

    reason = np.select(
        [within & won, within, ~eligible, ~passes],
        [SELECTED_ANSWER_WON, SELECTED_KEEP_LOST, NOT_SELECTED_ANSWER_LOST, "filter:" + reason_filter],
        default=NOT_SELECTED_BUDGET,
    )
    out["passes_filter"] = passes
    out["filter_reason"] = reason_filter
    out["budget_rank"] = pd.Series(ranks, index=out.index, dtype="Int64").where(candidates)
    out["selected"] = within
    out["selection_reason"] = reason.astype(object)
    return out


def decision_counts(selection: pd.DataFrame) -> pd.DataFrame:
    """The published code's four decision branches, with how many of each pass the filter.

    One row per (instruction_choice, response_choice), all four always present: rows, passed
    (the IFD < 1 and r-IFD < 1 filter) and selected (after the rule and any extension).
    """
    index = pd.MultiIndex.from_product(
        [[REFLECTED, ORIGINAL], [REFLECTED, ORIGINAL]], names=["instruction_choice", "response_choice"]
    )
    grouped = selection.groupby(["instruction_choice", "response_choice"])
    counts = pd.DataFrame(
        {
            "rows": grouped.size(),
            "passed_filter": grouped["passes_filter"].sum(),
            "selected": grouped["selected"].sum(),
        }
    )
    return counts.reindex(index, fill_value=0).astype("int64").reset_index()


def decision_counts_dict(selection: pd.DataFrame) -> dict[str, int]:
    """Flat counts for asset metadata, e.g. "q_reflected__a_won__passed_filter"."""
    names = {(REFLECTED, REFLECTED): "q_reflected__a_won", (REFLECTED, ORIGINAL): "q_reflected__a_lost",
             (ORIGINAL, REFLECTED): "q_original__a_won", (ORIGINAL, ORIGINAL): "q_original__a_lost"}
    flat: dict[str, int] = {}
    for row in decision_counts(selection).itertuples(index=False):
        key = names[(row.instruction_choice, row.response_choice)]
        for field in ("rows", "passed_filter", "selected"):
            flat[f"{key}__{field}"] = int(getattr(row, field))
    flat["total_rows"] = int(len(selection))
    flat["total_selected"] = int(selection["selected"].sum())
    return flat
