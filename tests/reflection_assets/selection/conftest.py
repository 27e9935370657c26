"""Hand-made frames shaped like the teacher runner's and the scoring engine's outputs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

NAN = math.nan


def raw_frame(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dataset": "demo",
            "row_id": ids,
            "instruction": [f"Q-{i}" for i in ids],
            "input": [f"in-{i}" if n % 2 else "" for n, i in enumerate(ids)],
            "output": [f"A-{i}" for i in ids],
        }
    )


def ifd_scores(rows: dict[str, tuple[float, str]]) -> pd.DataFrame:
    """row_id -> (ifd_ppl, ifd_status)."""
    return pd.DataFrame(
        {"row_id": list(rows), "ifd_ppl": [v for v, _ in rows.values()], "ifd_status": [s for _, s in rows.values()]}
    )


def pair_scores(rows: dict[str, tuple[float, str, float, str]]) -> pd.DataFrame:
    """row_id -> (ifd_ppl, ifd_status, rifd_ppl, rifd_status)."""
    return pd.DataFrame(
        {
            "row_id": list(rows),
            "ifd_ppl": [r[0] for r in rows.values()],
            "ifd_status": [r[1] for r in rows.values()],
            "rifd_ppl": [r[2] for r in rows.values()],
            "rifd_status": [r[3] for r in rows.values()],
        }
    )


def instruction_reflections(rows: dict[str, str]) -> pd.DataFrame:
    """row_id -> outcome; reflected rows get Q'/A' texts, failed ones None."""
    ok = [o == "reflected" for o in rows.values()]
    return pd.DataFrame(
        {
            "row_id": list(rows),
            "outcome": list(rows.values()),
            "new_instruction": [f"Q'-{i}" if good else None for i, good in zip(rows, ok)],
            "new_output": [f"A'-{i}" if good else None for i, good in zip(rows, ok)],
        }
    )


def response_reflections(rows: dict[str, str]) -> pd.DataFrame:
    ok = [o == "reflected" for o in rows.values()]
    return pd.DataFrame(
        {
            "row_id": list(rows),
            "outcome": list(rows.values()),
            "new_instruction": None,
            "new_output": [f"A''-{i}" if good else None for i, good in zip(rows, ok)],
        }
    )


@pytest.fixture
def make() -> SimpleNamespace:
    """The builders above (a fixture, so tests need not import conftest by module name)."""
    return SimpleNamespace(
        raw_frame=raw_frame,
        ifd_scores=ifd_scores,
        pair_scores=pair_scores,
        instruction_reflections=instruction_reflections,
        response_reflections=response_reflections,
    )


@pytest.fixture
def pipeline() -> dict[str, pd.DataFrame]:
    return build_pipeline()


def build_pipeline() -> dict[str, pd.DataFrame]:
    """A ten-row run through both stages and selection, with every branch represented.

    r0..r3 keep Q' (IFD rose), r4..r7 stay original, r8 reflection failed, r9 scoring failed.
    """
    from reflection_assets.selection import decide_instruction, decide_response, select_rows

    ids = [f"r{i}" for i in range(10)]
    raw = raw_frame(ids)
    raw_ifd = ifd_scores({i: (0.5 + 0.01 * n, "ok") for n, i in enumerate(ids)} | {"r9": (NAN, "prompt_too_long")})
    refl1 = instruction_reflections({i: "reflected" for i in ids[:8]} | {"r8": "parse_failed", "r9": "reflected"})
    refl_ifd = ifd_scores(
        {i: (0.9, "ok") for i in ids[:4]} | {i: (0.1, "ok") for i in ids[4:8]} | {"r9": (0.9, "ok")}
    )
    stage1 = decide_instruction(raw, refl1, raw_ifd, refl_ifd)
    refl2 = response_reflections({i: "reflected" for i in ids[:8]} | {"r8": "teacher_error", "r9": "reflected"})
    # (Q*, A*) and (Q*, A**) scores: the answer wins on r0, r1, r4, r5, r9; r1 (IFD 1) and r5 fail
    # the filter, so r0, r4 and r9 are selected.
    current = pair_scores({i: (0.6, "ok", 0.8, "ok") for i in ids})
    reflected = pair_scores(
        {
            "r0": (0.7, "ok", 0.5, "ok"),
            "r1": (1.0, "ok", 0.5, "ok"),
            "r2": (0.7, "ok", 0.9, "ok"),
            "r3": (0.7, "ok", 0.8, "ok"),
            "r4": (0.4, "ok", 0.5, "ok"),
            "r5": (1.2, "ok", 0.3, "ok"),
            "r6": (0.4, "ok", 0.9, "ok"),
            "r7": (0.4, "ok", NAN, "reverse_prompt_too_long"),
            "r9": (0.3, "ok", 0.2, "ok"),
        }
    )
    stage2 = decide_response(stage1, refl2, current, reflected)
    selection = select_rows(stage2)
    return {
        "raw": raw,
        "raw_ifd": raw_ifd,
        "instruction_reflections": refl1,
        "instruction_ifd": refl_ifd,
        "instruction_decisions": stage1,
        "response_reflections": refl2,
        "current_scores": current,
        "reflected_scores": reflected,
        "response_decisions": stage2,
        "selection": selection,
    }


def lineage_tables(pipeline: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The `pipeline` run as the warehouse holds it: one frame per table LINEAGE_SQL reads (arms drawn with seed 1)."""
    from reflection_assets.selection import ArmInputs, build_arms

    arms = build_arms(
        ArmInputs(
            pipeline["raw"], pipeline["raw_ifd"], pipeline["instruction_reflections"],
            pipeline["instruction_decisions"], pipeline["response_reflections"], pipeline["selection"], seed=1,
        )
    )
    return {
        "raw_instructions": pipeline["raw"],
        "instruction_reflections": pipeline["instruction_reflections"],
        "instruction_ifd_scores": pipeline["instruction_decisions"],
        "response_reflections": pipeline["response_reflections"],
        "response_scores": pipeline["response_decisions"],
        "selected_dataset": pipeline["selection"],
        "arm_datasets": pd.concat([r.frame for r in arms.values()], ignore_index=True),
    }
