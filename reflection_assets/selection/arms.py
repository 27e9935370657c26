"""Training sets of the ablation: the selective set and its baselines, all at its size k.

Every arm is a frame of ARM_COLUMNS (arm, row_id, instruction, input, output, source), one row
per kept pair, ordered by row_id so the same inputs always give the same file. Sampling arms
use numpy's seeded Generator on the row_id-sorted candidates, so the input order never changes
which rows are drawn.

A candidate filter (`ArmInputs.usable`, the exports' decontamination) runs on every arm's pool
before it is sized or drawn: an arm that lost rows after drawing would be smaller than the others,
and the comparison would no longer be at equal size. k is the selective set's size after it
(the selection's own decontamination, `target_size`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reflection_assets.scoring.statuses import OK
from reflection_assets.selection.columns import ARM_COLUMNS, ARMS
from reflection_assets.selection.decontamination import CONTAMINATION_COLUMN
from reflection_assets.selection.frames import require, score_view, text, unique_rows
from reflection_assets.teacher.outcomes import REFLECTED


@dataclass(frozen=True)
class ArmInputs:
    """What the arms are built from (frames of all dataset partitions together).

    raw: accepted raw pairs (row_id, instruction, input, output).
    raw_scores: IFD of the raw pairs (row_id, `ifd_column`, `status_column`): the Cherry baseline.
    instruction_reflections: stage-1 teacher outcomes (row_id, outcome, new_instruction, new_output).
    instruction_decisions: decide_instruction's output (row_id, instruction_choice).
    response_reflections: stage-2 teacher outcomes on the current pair (row_id, outcome, new_output).
    selection: select_rows's output (its `selected` rows are the selective arm and fix k).
    usable: keeps the candidate pairs an arm may use (frame with row_id, instruction, input, output ->
      the rows kept); None keeps all.
    """

    raw: pd.DataFrame
    raw_scores: pd.DataFrame
    instruction_reflections: pd.DataFrame
    instruction_decisions: pd.DataFrame
    response_reflections: pd.DataFrame
    selection: pd.DataFrame
    seed: int = 0
    ifd_column: str = "ifd_ppl"
    status_column: str = "ifd_status"
    max_ifd: float = 1.0
    usable: Callable[[pd.DataFrame], pd.DataFrame] | None = None


@dataclass(frozen=True)
class ArmResult:
    """One arm's rows and how far it fell short of the target size."""

    arm: str
    frame: pd.DataFrame
    target: int  # k (the selective set's size); len(raw) for `full`
    candidates: int  # rows the arm could draw from
    shortfall: int  # target - rows taken, when the candidates ran out


def _arm_frame(arm: str, frame: pd.DataFrame, source: str | np.ndarray) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "arm": arm,
            "row_id": frame["row_id"].astype(str).to_numpy(),
            "instruction": text(frame["instruction"]).to_numpy(),
            "input": text(frame["input"]).to_numpy(),
            "output": text(frame["output"]).to_numpy(),
            "source": source,
        },
        columns=ARM_COLUMNS,
    )
    return out.sort_values("row_id", kind="mergesort").reset_index(drop=True)


def _result(arm: str, picked: pd.DataFrame, target: int, candidates: int, source: str | np.ndarray) -> ArmResult:
    frame = _arm_frame(arm, picked, source)
    return ArmResult(arm, frame, target, candidates, max(0, target - len(frame)))


def _usable(inputs: ArmInputs, candidates: pd.DataFrame) -> pd.DataFrame:
    return candidates if inputs.usable is None else inputs.usable(candidates)


def _seeded_sample(candidates: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """k rows drawn without replacement, reproducible for a seed whatever the input order."""
    ordered = candidates.sort_values("row_id", kind="mergesort").reset_index(drop=True)
    if k >= len(ordered):
        return ordered
    picks = np.random.default_rng(seed).choice(len(ordered), size=k, replace=False)
    return ordered.iloc[np.sort(picks)]


def target_size(inputs: ArmInputs) -> int:
    """k: the size of the selective set that leaves the project, which every sized arm matches.

    A selected row the selection's decontamination dropped from its export (named in its
    CONTAMINATION_COLUMN) is not part of it.
    """
    return int(_exported(inputs.selection).sum())


def _exported(selection: pd.DataFrame) -> pd.Series:
    """The selected rows the selection exported (not left out by its decontamination)."""
    selected = selection["selected"].astype(bool)
    if CONTAMINATION_COLUMN in selection:
        selected &= selection[CONTAMINATION_COLUMN].fillna("").astype(str) == ""
    return selected


def _selective_pairs(inputs: ArmInputs) -> pd.DataFrame:
    require(inputs.selection, ["row_id", "selected", "instruction_choice", "response_choice", "final_instruction",
                               "final_input", "final_output"], "selection")
    sel = inputs.selection[inputs.selection["selected"].astype(bool)]  # `usable` below drops the contaminated
    rewritten = (sel["instruction_choice"] == REFLECTED) | (sel["response_choice"] == REFLECTED)
    pairs = pd.DataFrame(
        {
            "row_id": sel["row_id"].to_numpy(),
            "instruction": sel["final_instruction"].to_numpy(),
            "input": sel["final_input"].to_numpy(),
            "output": sel["final_output"].to_numpy(),
            "source": np.where(rewritten, "reflected", "raw"),
        }
    ).sort_values("row_id", kind="mergesort")
    return _usable(inputs, pairs)


def arm_selective(inputs: ArmInputs) -> ArmResult:
    """The method: the selected final pairs. Source is "reflected" when either part was rewritten."""
    pairs = _selective_pairs(inputs)
    return _result("selective", pairs, len(pairs), len(pairs), pairs["source"].to_numpy())


def reflected_all_candidates(inputs: ArmInputs) -> pd.DataFrame:
    """Every teacher rewrite with no student choice, one pair per row whose stage 1 succeeded.

    The authors compute the both-reflected version (Q', A'') of every row. Here the answer
    reflection runs on the *current* pair only, so a rewritten answer of Q' exists only where
    the student kept Q'. The pair is therefore:
    - (Q', A**) where stage 1 kept (Q', A') and the answer reflection of it succeeded: both the
      instruction and the answer were rewritten, as in the authors' arm;
    - (Q', A') otherwise (the row stayed (Q, A), so A** answers Q, not Q'; or the answer
      reflection of (Q', A') failed): the teacher's stage-1 rewrite, which already rewrites the
      answer together with the instruction.
    Rows whose stage-1 reflection failed have no rewrite and are not candidates.
    """
    columns = ["row_id", "outcome", "new_instruction", "new_output"]
    refl = unique_rows(inputs.instruction_reflections, columns, "instruction_reflections")
    refl = refl[(refl["outcome"] == REFLECTED) & (text(refl["new_instruction"]).str.strip() != "")
                & (text(refl["new_output"]).str.strip() != "")]
    choice = unique_rows(inputs.instruction_decisions, ["row_id", "instruction_choice"], "instruction_decisions")
    answer = unique_rows(inputs.response_reflections, ["row_id", "outcome", "new_output"], "response_reflections")
    answer = answer.rename(columns={"outcome": "answer_outcome", "new_output": "answer_output"})
    merged = refl.merge(choice, on="row_id", how="left").merge(answer, on="row_id", how="left")
    use_answer = (
        (merged["instruction_choice"] == REFLECTED)
        & (merged["answer_outcome"] == REFLECTED)
        & (text(merged["answer_output"]).str.strip() != "")
    )
    return pd.DataFrame(
        {
            "row_id": merged["row_id"].to_numpy(),
            "instruction": text(merged["new_instruction"]).to_numpy(),
            "input": "",
            "output": np.where(use_answer, text(merged["answer_output"]), text(merged["new_output"])),
        }
    )


def arm_reflected_all(inputs: ArmInputs) -> ArmResult:
    """Teacher rewrites without the student's choice, seeded sample of k (see reflected_all_candidates)."""
    k = target_size(inputs)
    candidates = _usable(inputs, reflected_all_candidates(inputs))
    return _result("reflected_all", _seeded_sample(candidates, k, inputs.seed), k, len(candidates), "reflected")


def _raw_pairs(inputs: ArmInputs) -> pd.DataFrame:
    """The accepted raw pairs an arm may use."""
    return _usable(inputs, unique_rows(inputs.raw, ["row_id", "instruction", "input", "output"], "raw"))


def arm_ifd_topk(inputs: ArmInputs) -> ArmResult:
    """Cherry-style: the k raw pairs of highest IFD, after dropping IFD >= 1 and non-ok scores.

    Ties are broken by row_id ascending, so the cut is deterministic.
    """
    k = target_size(inputs)
    raw = _raw_pairs(inputs)
    value, status = score_view(inputs.raw_scores, inputs.ifd_column, inputs.status_column, "raw_scores")
    raw = raw.assign(ifd=value.reindex(raw["row_id"].to_numpy()).to_numpy(),
                     status=status.reindex(raw["row_id"].to_numpy()).to_numpy())
    candidates = raw[(raw["status"] == OK) & (raw["ifd"] < inputs.max_ifd)]
    ranked = candidates.sort_values(["ifd", "row_id"], ascending=[False, True], kind="mergesort")
    return _result("ifd_topk", ranked.head(k), k, len(candidates), "raw")


def arm_random(inputs: ArmInputs) -> ArmResult:
    """k accepted raw pairs drawn with the seed."""
    k = target_size(inputs)
    raw = _raw_pairs(inputs)
    return _result("random", _seeded_sample(raw, k, inputs.seed), k, len(raw), "raw")


def arm_longest(inputs: ArmInputs) -> ArmResult:
    """The k raw pairs with the longest answers (characters; ties by row_id): the length baseline that
    large-scale selection studies found among the most stable (Ivison et al. 2025)."""
    k = target_size(inputs)
    raw = _raw_pairs(inputs)
    ranked = raw.assign(length=text(raw["output"]).str.len()).sort_values(
        ["length", "row_id"], ascending=[False, True], kind="mergesort"
    )
    return _result("longest", ranked.head(k), k, len(raw), "raw")


def arm_full(inputs: ArmInputs) -> ArmResult:
    """All accepted raw pairs (not sized to k)."""
    raw = _raw_pairs(inputs)
    return _result("full", raw, len(raw), len(raw), "raw")


_BUILDERS = {
    "selective": arm_selective,
    "reflected_all": arm_reflected_all,
    "ifd_topk": arm_ifd_topk,
    "random": arm_random,
    "longest": arm_longest,
    "full": arm_full,
}


def build_arm(arm: str, inputs: ArmInputs) -> ArmResult:
    """One arm by name (the arm_datasets asset runs one per static partition)."""
    if arm not in _BUILDERS:
        raise ValueError(f"unknown arm {arm!r}; expected one of {ARMS}")
    return _BUILDERS[arm](inputs)


def arm_rule(arm: str) -> str:
    """What chose an arm's rows, for its dataset card: the first paragraph of its builder's docstring."""
    doc = (_BUILDERS[arm].__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def build_arms(inputs: ArmInputs, arms: tuple[str, ...] = ARMS) -> dict[str, ArmResult]:
    """Every arm, by name."""
    return {arm: build_arm(arm, inputs) for arm in arms}


def arm_summary(results: dict[str, ArmResult]) -> pd.DataFrame:
    """One row per arm: rows, target, candidates, shortfall (for asset metadata)."""
    return pd.DataFrame(
        [
            {"arm": r.arm, "rows": len(r.frame), "target": r.target, "candidates": r.candidates,
             "shortfall": r.shortfall}
            for r in results.values()
        ]
    )
