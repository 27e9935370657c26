"""PNG plots for asset metadata (score histograms, loss curves), as bytes: no files, no state.

Each figure is a private `Figure` drawn on an Agg canvas (never pyplot), so nothing needs a
display, switches the process-wide backend, or shares pyplot state across threads.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _finite(values: Sequence[float | None]) -> list[float]:
    """Drop None/NaN/inf: a failed score has no place on a score axis."""
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def histogram_png(
    values_by_label: Mapping[str, Sequence[float | None]],
    title: str,
    xlabel: str,
    bins: int = 30,
    vline: float | None = 1.0,
) -> bytes:
    """Overlaid histograms, one per label, on shared bins; a dashed line at `vline` (the IFD cut)."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    series = {label: _finite(v) for label, v in values_by_label.items()}
    everything = [v for vs in series.values() for v in vs]
    edges = bins
    if everything:
        lo, hi = min(everything), max(everything)
        if vline is not None:
            lo, hi = min(lo, vline), max(hi, vline)
        if hi == lo:
            hi = lo + 1.0
        edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]
    for label, values in series.items():
        ax.hist(values, bins=edges, alpha=0.5, label=f"{label} (n={len(values)})")
    if vline is not None:
        ax.axvline(vline, color="black", linestyle="--", linewidth=1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    if series:
        ax.legend()
    return _png(fig)


def line_png(
    series_by_label: Mapping[str, Sequence[float] | tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str = "step",
    ylabel: str = "loss",
) -> bytes:
    """Line plot, one line per label; a value is either ys (x = 0, 1, ...) or an (xs, ys) pair."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    for label, data in series_by_label.items():
        if isinstance(data, tuple) and len(data) == 2:
            xs, ys = list(data[0]), list(data[1])
        else:
            ys = list(data)
            xs = list(range(len(ys)))
        ax.plot(xs, ys, marker="." if len(ys) < 50 else None, label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if series_by_label:
        ax.legend()
    return _png(fig)


def png_markdown(png_bytes: bytes, alt: str) -> str:
    """A markdown image with a base64 data URI, for dg.MetadataValue.md."""
    alt = alt.replace("[", "(").replace("]", ")")
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png_bytes).decode('ascii')})"
