"""Plots come back as PNG bytes and embed as markdown data URIs."""

from __future__ import annotations

import base64
import math

from reflection_assets.plots import histogram_png, line_png, png_markdown

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_histogram_overlaid_with_nan_and_empty_series():
    png = histogram_png(
        {"original": [0.2, 0.5, 0.9, 1.2, math.nan, None], "reflected": [0.4, 0.6], "empty": []},
        title="IFD", xlabel="IFD (ppl)", bins=10,
    )
    assert png.startswith(PNG_MAGIC) and len(png) > 1000


def test_histogram_degenerate_inputs():
    assert histogram_png({}, "none", "x").startswith(PNG_MAGIC)
    assert histogram_png({"one": [1.0, 1.0]}, "same", "x", vline=None).startswith(PNG_MAGIC)


def test_line_png_ys_and_xy_pairs():
    png = line_png({"train": [2.0, 1.5, 1.2], "eval": ([0, 2], [2.1, 1.4])}, title="loss")
    assert png.startswith(PNG_MAGIC)


def test_png_markdown():
    png = line_png({"a": [1.0]}, title="t")
    md = png_markdown(png, "loss [curve]")
    assert md.startswith("![loss (curve)](data:image/png;base64,")
    assert base64.b64decode(md.split(",", 1)[1].rstrip(")")) == png
