"""How often the report decides on data where the truth is known: simulated scores, the real report code.

A simulated evaluation has the shape of a real one: items with their own difficulty, a base that is
not trained, every trained arm with `seeds` runs, each run shifted as a whole (`run_sd`) and every
score noisy (`noise_sd`), plus a planted effect per arm. `error_rates` feeds many such evaluations to
`comparison_table` and counts the verdicts: the primary row's and the Holm family's false verdicts on
rows whose two sides have the same true mean, and the primary row's power where they differ, beside
what the items-only test (the verdict before runs counted) says on the same data. Its tests
(tests/reflection_assets/evaluation/test_calibration.py) and `benchmarks/verdict_calibration.py` read it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reflection_assets.evaluation.report import (
    PRIMARY,
    SECONDARY,
    ReportSettings,
    comparison_table,
    item_level_verdicts,
)
from reflection_assets.evaluation.runner import BASE
from reflection_assets.evaluation.significance import BETTER, WORSE
from reflection_assets.evaluation.suites import HELDOUT_NLL

DECIDED = (BETTER, WORSE)


@dataclass(frozen=True)
class Design:
    """What one evaluation looks like: items on the primary endpoint, seeds per trained arm, the arms."""

    name: str
    items: int
    seeds: int
    arms: tuple[str, ...]


DEMO = Design("demo", 33, 2, ("selective", "reflected_all", "random", "full"))
EXPERIMENT = Design("experiment", 40, 3, ("selective", "reflected_all", "ifd_topk", "random", "longest", "full"))


@dataclass(frozen=True)
class Noise:
    """Held-out NLL's spreads: items' difficulty (cancels in pairs), per-score noise, per-run shift."""

    item_sd: float = 0.5
    noise_sd: float = 0.02
    run_sd: float = 0.0


# The tour demo's held-out NLL spreads, what "as in the demo" means in the calibration tests and
# benchmarks/verdict_calibration.py: items and per-score noise from `noise_of` on a `make demo` (2-core
# machine with native bf16: item sd 0.82, noise sd 0.011, run sd 0.0013); the run sd from the demo on a
# CPU without bf16, where selective's two seeds scored 1.595 and 1.605 (sd 0.007), the larger of the two.
DEMO_NOISE = Noise(item_sd=0.8, noise_sd=0.011, run_sd=0.007)


@dataclass(frozen=True)
class Rates:
    """Verdict rates over `runs` simulated evaluations, with their Monte Carlo standard errors."""

    runs: int
    primary: float  # no planted difference: share of false verdicts; else: share in the right direction (power)
    family: float  # share of runs with any secondary null row decided (Holm family-wise error)
    primary_items_only: float  # the same primary row judged by the items-only test (the old verdict)
    family_items_only: float

    def se(self, rate: float) -> float:
        """Monte Carlo standard error of a rate over `runs` simulated evaluations."""
        return math.sqrt(max(rate * (1 - rate), 1e-12) / self.runs)


def noise_of(scores: pd.DataFrame, suite: str = HELDOUT_NLL, metric: str = "nll") -> Noise:
    """The spreads of a real evaluation (its trained arms' seeds), to simulate evaluations like it."""
    from reflection_assets.evaluation.report import run_matrices
    from reflection_assets.evaluation.runs import pooled_spread

    matrices = run_matrices(scores, suite, metric)
    spread = pooled_spread({m: f.to_numpy(float) for m, f in matrices.items() if m != BASE})
    if not spread.known:
        raise ValueError(f"no arm was evaluated with two seeds or more on {suite}/{metric}")
    items = int(np.mean([a.items for a in spread.arms.values() if a.runs >= 2]))
    between = max(0.0, spread.run_var - spread.noise_var / items)
    base = matrices.get(BASE)
    item_sd = float(base.to_numpy(float).std(ddof=1)) if base is not None else Noise.item_sd
    return Noise(item_sd=item_sd, noise_sd=math.sqrt(spread.noise_var), run_sd=math.sqrt(between))


def simulate_scores(
    design: Design, noise: Noise, effects: Mapping[str, float], rng: np.random.Generator
) -> pd.DataFrame:
    """One evaluation's held-out NLL scores: the base once, every arm `design.seeds` times."""
    item = rng.normal(2.0, noise.item_sd, design.items)
    ids = [f"i{k}" for k in range(design.items)]
    frames = [_frame(BASE, 0, ids, item + rng.normal(0, noise.noise_sd, design.items))]
    for arm in design.arms:
        for seed in range(design.seeds):
            shift = effects.get(arm, 0.0) + rng.normal(0, noise.run_sd)
            frames.append(_frame(arm, seed, ids, item + shift + rng.normal(0, noise.noise_sd, design.items)))
    return pd.concat(frames, ignore_index=True)


def _frame(model: str, seed: int, ids: list[str], values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {"model": model, "suite": HELDOUT_NLL, "metric": "nll", "item_id": ids, "value": values, "seed": seed}
    )


def error_rates(
    design: Design,
    noise: Noise,
    effects: Mapping[str, float] | None = None,
    runs: int = 400,
    seed: int = 0,
    settings: ReportSettings | None = None,
) -> Rates:
    """Run the report on `runs` simulated evaluations and count its verdicts (see `Rates`)."""
    effects = dict(effects or {})
    settings = settings or ReportSettings(resamples=999)  # p_items only: its Monte Carlo draws
    rng = np.random.default_rng(seed)
    primary = family = primary_old = family_old = 0
    for _ in range(runs):
        table = comparison_table(simulate_scores(design, noise, effects, rng), settings)
        old = item_level_verdicts(table, settings)
        truth = [effects.get(m, 0.0) - effects.get(r, 0.0) for m, r in zip(table["model"], table["reference"])]
        is_primary = (table["role"] == PRIMARY).to_numpy()
        is_family = (table["role"] == SECONDARY).to_numpy() & (np.array(truth) == 0)
        wanted = _counted(truth[int(np.argmax(is_primary))]) if is_primary.any() else DECIDED
        primary += bool(table.loc[is_primary, "verdict"].isin(wanted).any())
        family += bool(table.loc[is_family, "verdict"].isin(DECIDED).any())
        primary_old += bool(old[is_primary].isin(wanted).any())
        family_old += bool(old[is_family].isin(DECIDED).any())
    return Rates(runs, primary / runs, family / runs, primary_old / runs, family_old / runs)


def _counted(true_difference: float) -> tuple[str, ...]:
    """What counts for the primary row: any verdict when there is no difference (a false one), else the right
    direction (held-out NLL: lower is better)."""
    if true_difference == 0:
        return DECIDED
    return (BETTER,) if true_difference < 0 else (WORSE,)
