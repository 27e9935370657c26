"""The ablation plot: per suite and metric, each arm's difference from the base with its 95 % interval."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from reflection_assets.plots import _png


def intervals_png(table: pd.DataFrame) -> bytes:
    """One panel per suite/metric; a point per arm at delta vs base, bars to the interval, a line at 0."""
    compared = table[table["verdict_vs_base"].astype(str) != ""]
    panels = list(compared.groupby(["suite", "metric"], sort=True)) or [(("no arms", ""), compared)]
    fig = Figure(figsize=(3.2 * len(panels), 3.4))
    for k, ((suite, metric), part) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), k)
        xs = list(range(len(part)))
        deltas = part["delta_vs_base"].astype(float).tolist()
        low = [d - lo if not math.isnan(lo) else 0 for d, lo in zip(deltas, part["ci_low"].astype(float))]
        high = [hi - d if not math.isnan(hi) else 0 for d, hi in zip(deltas, part["ci_high"].astype(float))]
        ax.errorbar(xs, deltas, yerr=[low, high], fmt="o", capsize=4)
        ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(xs, part["model"].tolist(), rotation=30)
        ax.set_title(f"{suite}\n{metric} (arm - base)", fontsize=9)
    fig.tight_layout()
    return _png(fig)
