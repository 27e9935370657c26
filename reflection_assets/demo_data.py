"""Where the bundled demo datasets live, and the dataset partition that reads them."""

from __future__ import annotations

from pathlib import Path

# Next to this module, inside the installed package (pyproject ships demo_data/*.jsonl), so the
# paths hold for an editable checkout and a wheel alike.
DEMO_DIR = Path(__file__).resolve().parent / "demo_data"
DEMO_TRAIN_PATH = DEMO_DIR / "demo_train.jsonl"  # Alpaca rows, about a quarter with weak answers
DEMO_EVAL_PATH = DEMO_DIR / "demo_eval.jsonl"  # held out: no row shared with the train set

DATA_ENV = "REFLECTION_DATA"
DEMO_PARTITION = "demo"  # the dataset partition that reads DEMO_TRAIN_PATH unless told otherwise

