"""Reflection-70B format applied to selected pairs (the format itself: `reflection_assets.reflection70b`).

Pure: the teacher, its call cache and the scoring function come in as arguments, so the
selection asset stays thin and tests can pass a scripted teacher.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from reflection_assets.reflection70b import REFLECTION_FORMAT_PROMPT_VERSION
from reflection_assets.schema import Pair
from reflection_assets.scoring.statuses import OK
from reflection_assets.teacher.backend import TeacherBackend
from reflection_assets.teacher.cache import CallCache
from reflection_assets.teacher.outcomes import REFLECTED
from reflection_assets.teacher.prompts import PROMPT_VERSION
from reflection_assets.teacher.runner import reflect_rows
from reflection_assets.teacher.settings import ReflectionSettings
from reflection_assets.teacher.types import FORMAT

# (pairs, label) -> (scores frame with row_id, ifd_ppl, rifd_ppl and their statuses; tokens that needed a forward pass)
ScoreFn = Callable[[list[Pair], str], tuple[pd.DataFrame, int]]


def final_pairs(frame: pd.DataFrame) -> list[Pair]:
    """The final (instruction, input, output) of each selection row as scoring/teacher `Pair`s."""
    return [Pair(r.final_instruction, r.final_output, r.final_input, row_id=r.row_id) for r in frame.itertuples()]


def rewrite_in_reflection_format(
    selection: pd.DataFrame,
    teacher: TeacherBackend,
    cache: CallCache,
    score: ScoreFn,
    max_new_tokens: int,
    log: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Reflection-70B option: the teacher rewrites each selected answer (guided, cached like every call).

    Rewrites that fail the format validator keep the plain answer and say why (`reflection_format`:
    "ok", "kept_plain:<outcome>:<error>" or "not_selected"). The rewritten pairs are scored again
    and the scores recorded (`formatted_*`); they do not change which rows are selected.
    Returns the selection and the counts for metadata.
    """
    selection = selection.copy()
    selection["plain_output"] = selection["final_output"]
    selection["reflection_format"] = "not_selected"
    selected = selection["selected"].astype(bool)
    pairs = final_pairs(selection[selected])
    settings = ReflectionSettings(
        max_new_tokens=max_new_tokens,
        # The deployment's sampling and guidance (a Teacher resource's fields; a bare backend: greedy).
        temperature=getattr(teacher, "temperature", 0.0),
        top_p=getattr(teacher, "top_p", 1.0),
        seed=getattr(teacher, "seed", None),
        guided=teacher.guided_by_default,
        prompt_version=f"{PROMPT_VERSION}+{REFLECTION_FORMAT_PROMPT_VERSION}",
    )
    outcomes, stats = reflect_rows(pairs, FORMAT, teacher, cache, settings, log=log)
    by_id = outcomes.set_index("row_id")
    ok = by_id["outcome"] == REFLECTED
    reasons = by_id["outcome"].where(ok, "kept_plain:" + by_id["outcome"] + ":" + by_id["error"].astype(str))
    index = selection.index[selected]
    selection.loc[index, "reflection_format"] = (
        reasons.loc[selection.loc[index, "row_id"]].str.replace(REFLECTED, OK).values
    )
    rewrite = selection["row_id"].isin(set(by_id.index[ok])) & selected
    selection.loc[rewrite, "final_output"] = by_id.loc[selection.loc[rewrite, "row_id"], "new_output"].values

    scores, tokens = score(final_pairs(selection[rewrite]), "reflection-format scores")
    scored = scores.set_index("row_id")
    for column in ("ifd_ppl", "rifd_ppl", "ifd_status", "rifd_status"):
        selection[f"formatted_{column}"] = selection["row_id"].map(scored[column]) if len(scored) else None
    numbers = {
        "format_rows": len(pairs),
        "format_ok": int(ok.sum()),
        "format_kept_plain": int((~ok).sum()),
        "format_calls_cached": stats.calls_cached,
        "teacher_calls_made": stats.calls_made,
        "tokens_computed": tokens,
    }
    return selection, numbers
