"""The ablation table: each model's mean per suite and metric, paired intervals vs the base and vs `random`.

Contaminated items are left out before anything is computed. A delta is the raw
difference (arm - reference: for NLL lower is better), and the verdict reads it in the metric's
direction, so "better" always means better.
"""

from __future__ import annotations

import math

import pandas as pd

from reflection_assets.evaluation.bootstrap import NO_EVIDENCE, RESAMPLES, WORSE, Interval, paired_interval, verdict
from reflection_assets.evaluation.runner import BASE, LOWER_IS_BETTER
from reflection_assets.evaluation.suites import HELDOUT_NLL, JUDGE

RANDOM_ARM, METHOD_ARM, POSITIVE_CONTROL_ARM = "random", "selective", "full"
REPORT_COLUMNS = [
    "model",
    "suite",
    "metric",
    "n",
    "value",
    "delta_vs_base",
    "ci_low",
    "ci_high",
    "verdict_vs_base",
    "delta_vs_random",
    "ci_low_vs_random",
    "ci_high_vs_random",
    "verdict_vs_random",
]
NAN = float("nan")


def _paired(frame: pd.DataFrame, model: str, reference: str) -> tuple[list[float], list[float]]:
    a = frame[frame["model"] == model].set_index("item_id")["value"]
    b = frame[frame["model"] == reference].set_index("item_id")["value"]
    shared = sorted(set(a.index) & set(b.index))
    return [float(a[i]) for i in shared], [float(b[i]) for i in shared]


def _interval_columns(interval: Interval | None, higher_is_better: bool, against: str) -> dict:
    """delta / ci_low / ci_high / verdict columns against `against` ('base' keeps the short names)."""
    suffix = "" if against == "base" else f"_vs_{against}"
    if interval is None:
        return {
            f"delta_vs_{against}": NAN,
            f"ci_low{suffix}": NAN,
            f"ci_high{suffix}": NAN,
            f"verdict_vs_{against}": "",
        }
    return {
        f"delta_vs_{against}": interval.delta,
        f"ci_low{suffix}": interval.low,
        f"ci_high{suffix}": interval.high,
        f"verdict_vs_{against}": verdict(interval, higher_is_better),
    }


def ablation_table(scores: pd.DataFrame, resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """One row per model x suite x metric (REPORT_COLUMNS). Contaminated items must already be removed.

    The judge compares an arm with the base directly, so its 'vs base' interval is that of the
    per-item verdicts (+1/0/-1) against zero.
    """
    rows = []
    models = [BASE] + sorted(m for m in scores["model"].unique() if m != BASE)
    for (suite, metric), part in scores.groupby(["suite", "metric"], sort=True):
        higher = metric not in LOWER_IS_BETTER
        for model in models:
            own = part[part["model"] == model]
            if own.empty:
                continue
            row = {"model": model, "suite": suite, "metric": metric, "n": len(own), "value": float(own["value"].mean())}
            vs_base = None
            if model != BASE:
                if suite == JUDGE:
                    values = own["value"].astype(float).tolist()
                    vs_base = paired_interval(values, [0.0] * len(values), resamples, seed)
                elif (part["model"] == BASE).any():
                    vs_base = paired_interval(*_paired(part, model, BASE), resamples, seed)
            vs_random = None
            if model not in (BASE, RANDOM_ARM) and (part["model"] == RANDOM_ARM).any():
                vs_random = paired_interval(*_paired(part, model, RANDOM_ARM), resamples, seed)
            row.update(_interval_columns(vs_base, higher, "base"))
            row.update(_interval_columns(vs_random, higher, "random"))
            rows.append(row)
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


def method_warnings(table: pd.DataFrame) -> list[str]:
    """Where `selective` is significantly worse than the base or than `random`."""
    method = table[table["model"] == METHOD_ARM]
    out = []
    for row in method.itertuples():
        for against in ("base", "random"):
            if getattr(row, f"verdict_vs_{against}") == WORSE:
                out.append(f"{row.suite}/{row.metric}: selective is worse than {against}")
    return out


def positive_control_note(table: pd.DataFrame) -> str:
    """The `full` arm against the base on held-out NLL should differ; if not, the suites are too small."""
    control = table[(table["model"] == POSITIVE_CONTROL_ARM) & (table["suite"] == HELDOUT_NLL)]
    if control.empty:
        return "positive control not run (no `full` arm evaluated)"
    if control.iloc[0]["verdict_vs_base"] == NO_EVIDENCE:
        return (
            "positive control failed: `full` does not differ from the base on held-out NLL, so these suites are "
            "too small to detect an effect; read 'no evidence' as 'not measurable here', not as 'no effect'"
        )
    return f"positive control ok: `full` is {control.iloc[0]['verdict_vs_base']} than the base on held-out NLL"


def _fmt(value: float, digits: int = 3) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown_table(table: pd.DataFrame) -> str:
    """The table as a user reads it: value, [interval] and verdict vs base and vs random."""
    lines = [
        "| model | suite | metric | n | value | vs base: delta [95% CI] | verdict "
        "| vs random: delta [95% CI] | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        vs_base = f"{_fmt(r.delta_vs_base)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if r.verdict_vs_base else ""
        vs_random = (
            f"{_fmt(r.delta_vs_random)} [{_fmt(r.ci_low_vs_random)}, {_fmt(r.ci_high_vs_random)}]"
            if r.verdict_vs_random
            else ""
        )
        lines.append(
            f"| {r.model} | {r.suite} | {r.metric} | {r.n} | {_fmt(r.value)} | {vs_base} | {r.verdict_vs_base} "
            f"| {vs_random} | {r.verdict_vs_random} |"
        )
    return "\n".join(lines)
