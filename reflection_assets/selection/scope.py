"""Which dataset partitions a selection reads, and its rows as exported pairs.

By default the selection reads every scored partition (as automation does); a config may name
some, and naming one that has no scored rows is the user's mistake, said with what exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


class UnknownDatasetsError(ValueError):
    """The selection names dataset partitions that have no scored rows."""


@dataclass(frozen=True)
class SelectionScope:
    response_scores: pd.DataFrame
    raw_scores: pd.DataFrame
    datasets: list[str]
    named: bool  # the config named the partitions (else: every scored one)

    def description(self) -> str:
        which = "the partitions named in its config" if self.named else "every partition"
        return f"{which}: {self.datasets}"


def selection_scope(response_scores: pd.DataFrame, raw_scores: pd.DataFrame, wanted: list[str]) -> SelectionScope:
    """The scored rows of the `wanted` partitions ([]: every partition)."""
    scored = sorted(response_scores["dataset"].unique()) if len(response_scores) else []
    if not wanted:
        return SelectionScope(response_scores, raw_scores, scored, named=False)
    unknown = sorted(set(wanted) - set(scored))
    if unknown:
        raise UnknownDatasetsError(
            f"selection config names dataset partitions with no scored rows: {unknown} (scored: {scored})"
        )
    if "dataset" in raw_scores:
        raw_scores = raw_scores[raw_scores["dataset"].isin(wanted)]
    return SelectionScope(
        response_scores[response_scores["dataset"].isin(wanted)], raw_scores, sorted(wanted), named=True
    )


def in_datasets(frames: list[pd.DataFrame], datasets: list[str]) -> list[pd.DataFrame]:
    """Each frame's rows of `datasets` ([]: every row; a frame without a dataset column is kept whole)."""
    if not datasets:
        return frames
    return [frame[frame["dataset"].isin(datasets)] if "dataset" in frame else frame for frame in frames]


def selected_pairs(selection: pd.DataFrame) -> pd.DataFrame:
    """The selected rows as plain pairs (row_id, instruction, input, output) for export."""
    chosen = selection[selection["selected"].astype(bool)]
    return chosen.rename(
        columns={"final_instruction": "instruction", "final_input": "input", "final_output": "output"}
    )[["row_id", "instruction", "input", "output"]]
