"""The ablation plot: per suite and metric, the method's difference from each reference with its 95 % interval."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from reflection_assets.plots import _png


def intervals_png(table: pd.DataFrame) -> bytes:
    """One panel per suite/metric; a point per reference at the method's delta, bars to the interval, a line at 0."""
    from reflection_assets.evaluation.report import METHOD_ARM

    compared = table[table["model"] == METHOD_ARM] if len(table) else table
    panels = list(compared.groupby(["suite", "metric"], sort=True)) or [(("no arms", ""), compared)]
    fig = Figure(figsize=(3.2 * len(panels), 3.4))
    for k, ((suite, metric), part) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), k)
        xs = list(range(len(part)))
        deltas = part["delta"].astype(float).tolist()
        low = [d - lo if not math.isnan(lo) else 0 for d, lo in zip(deltas, part["ci_low"].astype(float))]
        high = [hi - d if not math.isnan(hi) else 0 for d, hi in zip(deltas, part["ci_high"].astype(float))]
        ax.errorbar(xs, deltas, yerr=[low, high], fmt="o", capsize=4)
        ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(xs, part["reference"].tolist(), rotation=30)
        ax.set_title(f"{suite}\n{metric} ({METHOD_ARM} - reference)", fontsize=9)
    fig.tight_layout()
    return _png(fig)
