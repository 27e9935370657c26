"""The trained run as a source of chance: a random intercept per run, beside the items.

Every trained run (a seed: its data order, its sampled rows, its initialisation) moves all of its
items together. The model behind the verdict, per suite and metric:

    score[arm, run, item] = arm + item + arm x item + run shift + noise

with run shifts drawn with one variance for every trained arm (the same recipe trained them) and the
base untrained (one fixed run, no shift). For an arm A with R_A runs against B on the same n items,
the difference of their means has variance

    Var(delta) = run_var * (1 / R_A + 1 / R_B) + interaction / n      (1 / R_B only when B was trained)

where `run_var` is how much one run's mean varies (its shift plus its item noise averaged), pooled
over the arms with two runs or more, and `interaction` is how the two arms differ item by item (the
spread of per-item differences with the runs' noise taken out), which another set of items would draw
anew. With no arm trained twice, `run_var` is unknown and the verdict is "too few runs", not a guess.
The test is Welch's t with Satterthwaite's degrees of freedom over both terms, so a difference the
run spread could make by itself is not called a difference between the methods. Its false-verdict rate
on simulated null data is checked in CI (`calibration`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from reflection_assets.evaluation.significance import ALPHA

POWER = 0.8
MAX_SEEDS = 1000  # "seeds needed" beyond this reads as "more seeds cannot get there"


@dataclass(frozen=True)
class ArmRuns:
    """One arm's own run spread on one suite/metric, from its run x item matrix."""

    runs: int
    items: int
    between_sd: float  # sd of its runs' shifts, the within-run item noise taken out (NaN below two runs)


def _anova(matrix: np.ndarray) -> tuple[float, float, int, int]:
    """(sum of squares of runs, residual sum of squares, their df) of a complete run x item matrix."""
    runs, items = matrix.shape
    grand = matrix.mean()
    run_means, item_means = matrix.mean(axis=1), matrix.mean(axis=0)
    ss_run = items * float(np.sum((run_means - grand) ** 2))
    residual = matrix - run_means[:, None] - item_means[None, :] + grand
    ss_res = float(np.sum(residual**2))
    return ss_run, ss_res, runs - 1, (runs - 1) * (items - 1)


def _replicated(matrix: np.ndarray) -> bool:
    return matrix.shape[0] >= 2 and matrix.shape[1] >= 2


def arm_runs(matrix: np.ndarray, anova: tuple[float, float, int, int] | None = None) -> ArmRuns:
    """An arm's spread between runs (rows: runs, columns: the items every run answered); `anova`: its `_anova`."""
    runs, items = matrix.shape
    if not _replicated(matrix):
        return ArmRuns(runs, items, float("nan"))
    ss_run, ss_res, df_run, df_res = anova or _anova(matrix)
    return ArmRuns(runs, items, math.sqrt(max(0.0, (ss_run / df_run - ss_res / df_res) / items)))


@dataclass(frozen=True)
class RunSpread:
    """The variance of one run's mean score, pooled over the trained arms of one suite/metric, and its df."""

    run_var: float  # variance between an arm's run means (run shifts plus their item noise / n)
    noise_var: float  # within-run, per-item noise variance (NaN without an arm of two runs)
    noise_df: int  # its degrees of freedom
    run_df: int  # sum over arms of (runs - 1): the replicate runs behind run_var; 0 = unknown
    arms: dict[str, ArmRuns]

    @property
    def known(self) -> bool:
        return self.run_df > 0

    @property
    def run_sd(self) -> float:
        return math.sqrt(self.run_var) if self.known else float("nan")


def pooled_spread(matrices: dict[str, np.ndarray]) -> RunSpread:
    """The variance of run means within every trained arm, pooled (arms with one run add nothing).

    Pooled by degrees of freedom, it is a chi-square estimate with `run_df` df of what one run's mean
    varies by, whatever part of it is run shift and whatever item noise: the term that dominates a
    comparison of arms with few seeds is then estimated without a subtraction."""
    anovas = {name: _anova(m) for name, m in matrices.items() if _replicated(m)}
    arms = {name: arm_runs(m, anovas.get(name)) for name, m in matrices.items()}
    if not anovas:
        return RunSpread(0.0, float("nan"), 0, 0, arms)
    parts = [anovas[name] + (matrices[name].shape[1],) for name in anovas]
    run_df = sum(p[2] for p in parts)
    run_var = sum(p[0] / p[4] for p in parts) / run_df  # SS_run / items = sum of squared run-mean deviations
    noise_df = sum(p[3] for p in parts)
    noise = sum(p[1] for p in parts) / noise_df
    return RunSpread(run_var, noise, noise_df, run_df, arms)


@dataclass(frozen=True)
class RunComparison:
    """A's mean minus B's, with an uncertainty that counts runs as well as items."""

    delta: float
    se: float
    df: float
    low: float
    high: float
    p_value: float
    detectable: float  # smallest |delta| this design detects with 80 % power at alpha
    item_var: float  # arm x item interaction: per-item differences' spread with the runs' noise taken out
    items: int
    runs_model: int
    runs_reference: int  # 0: an untrained reference (the base), no run shift

    def seeds_needed(self, effect: float, spread: RunSpread, alpha: float = ALPHA) -> float:
        """Seeds per trained side for 80 % power at |effect| (normal approximation); inf when more seeds
        cannot get there (the items' own spread is too wide: more items are needed)."""
        effect = abs(effect)
        if not spread.known or not effect or not np.isfinite(effect):
            return float("nan")
        z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(POWER))
        fixed = self.item_var / self.items
        if z * math.sqrt(fixed) >= effect:
            return math.inf
        sides = 1 + (self.runs_reference > 0)
        need = sides * spread.run_var / ((effect / z) ** 2 - fixed)
        return float(max(2, math.ceil(need))) if need <= MAX_SEEDS else math.inf


def compare(
    model: np.ndarray, reference: np.ndarray, spread: RunSpread, reference_trained: bool, alpha: float = ALPHA
) -> RunComparison:
    """`model` (runs x items) against `reference` (runs x the same items; an untrained reference has one run).

    Var(delta) = run_var * (1/R_A + 1/R_B) + interaction / n: the first term from the arms' replicate
    runs (df run_df), the second from the per-item differences with the runs' item noise taken out
    (what stays is how the two arms differ item by item, which a new set of items would draw anew)."""
    runs_a, n = model.shape
    runs_b = reference.shape[0] if reference_trained else 0
    per_run = 1 / runs_a + (1 / runs_b if runs_b else 0.0)
    d = model.mean(axis=0) - reference.mean(axis=0)
    delta = float(d.mean()) if n else float("nan")
    if n < 2:
        nan = float("nan")
        return RunComparison(delta, nan, nan, nan, nan, nan, nan, nan, n, runs_a, runs_b)
    spread_d = float(np.var(d, ddof=1))
    noise = spread.noise_var * per_run if spread.noise_df else 0.0
    interaction = max(0.0, spread_d - noise)
    v_runs, v_items = spread.run_var * per_run, interaction / n
    # The interaction is a difference of two mean squares: its own (Satterthwaite) df is small when it is
    # small, so a noise-sized remainder does not lend the test the items' n - 1 degrees of freedom.
    if interaction > 0:
        items_df = interaction**2 / (spread_d**2 / (n - 1) + (noise**2 / spread.noise_df if spread.noise_df else 0.0))
        df = _satterthwaite(v_runs, spread.run_df, v_items, items_df)
    else:
        df = float(spread.run_df) if spread.run_df else float("nan")
    se = math.sqrt(v_runs + v_items)
    p, low, high, detectable = _t_test(delta, se, df, alpha)
    return RunComparison(delta, se, df, low, high, p, detectable, interaction, n, runs_a, runs_b)


def _satterthwaite(v_runs: float, df_runs: float, v_items: float, df_items: float) -> float:
    """Degrees of freedom of a sum of two variance estimates (Welch-Satterthwaite)."""
    if df_runs < 1:
        return float("nan")
    denominator = v_runs**2 / df_runs + v_items**2 / df_items
    return (v_runs + v_items) ** 2 / denominator if denominator > 0 else float(df_runs)


def _t_test(delta: float, se: float, df: float, alpha: float) -> tuple[float, float, float, float]:
    """(two-sided p, interval low, high, detectable effect) of delta / se on t(df)."""
    if not np.isfinite(se) or not np.isfinite(df):
        return float("nan"), float("nan"), float("nan"), float("nan")
    quantile = float(stats.t.ppf(1 - alpha / 2, df))
    detectable = (quantile + float(stats.t.ppf(POWER, df))) * se
    if se == 0:
        return (1.0 if delta == 0 else 0.0), delta, delta, 0.0
    p = float(2 * stats.t.sf(abs(delta) / se, df))
    return p, delta - quantile * se, delta + quantile * se, detectable
