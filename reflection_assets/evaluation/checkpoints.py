"""Reading the `lora_checkpoint` table (the training issue's contract) into models to evaluate.

One row per arm and training seed; rows whose status is "skipped" (or whose adapter folder is gone)
are left out with their reason. The adapters are attached to one loaded base model, each under
its model label (`ModelUnderTest.label`: the arm, `arm-seedN` after the first seed), so
generation can mix them in a batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from reflection_assets.evaluation.runner import BASE, ModelUnderTest
from reflection_assets.model_store import timed_load
from reflection_assets.training.statuses import CHECKPOINT_KEY_COLUMNS, REUSED, SKIPPED, TRAINED

REQUIRED_COLUMNS = tuple(c for c in CHECKPOINT_KEY_COLUMNS if c != "seed")  # a table from before seeds: seed 0


class CheckpointTableError(ValueError):
    """`lora_checkpoint` is malformed (names the missing columns or the bad rows)."""


def usable_checkpoints(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rows with an adapter to evaluate, and {model label: reason} for every arm and seed left out."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise CheckpointTableError(f"lora_checkpoint lacks columns {missing}")
    table = table.assign(seed=table["seed"].astype(int) if "seed" in table.columns else 0)
    duplicated = table.duplicated(["arm", "seed"])
    if duplicated.any():
        pairs = sorted(f"{r.arm} seed {r.seed}" for r in table[duplicated].itertuples())
        raise CheckpointTableError(f"lora_checkpoint has several rows for {pairs}")
    unknown = sorted(set(table["status"].astype(str)) - {TRAINED, REUSED, SKIPPED})
    if unknown:
        raise CheckpointTableError(f"lora_checkpoint has unknown statuses {unknown}")
    skipped: dict[str, str] = {}
    keep = []
    for row in table.sort_values(["arm", "seed"]).itertuples():
        label = ModelUnderTest(str(row.arm), None, "", int(row.seed)).label
        if row.status == SKIPPED:
            skipped[label] = f"skipped in training: {row.skipped_reason or 'no reason given'}"
        elif not (Path(str(row.adapter_path)) / "adapter_config.json").is_file():
            skipped[label] = f"adapter folder missing: {row.adapter_path}"
        else:
            keep.append(row.Index)
    return table.loc[keep], skipped


def models_under_test(usable: pd.DataFrame, adapter_names: Mapping[str, str] | None = None) -> list[ModelUnderTest]:
    """The base first, then one model per usable arm and seed; its adapter is named by its label
    (`attach_adapters`) unless `adapter_names` says otherwise ({label: served name} on a vLLM server)."""
    names = adapter_names or {}
    models = [ModelUnderTest(BASE, None, "")]
    for r in usable.itertuples():
        label = ModelUnderTest(str(r.arm), None, "", _seed(r)).label
        models.append(ModelUnderTest(str(r.arm), names.get(label, label), str(r.checkpoint_key), _seed(r)))
    return models


def _seed(row: Any) -> int:
    return int(getattr(row, "seed", 0) or 0)


def label_of(row: Any) -> str:
    """A lora_checkpoint row's model label: the arm, `arm-seedN` after the first seed."""
    return ModelUnderTest(str(row.arm), None, "", _seed(row)).label


def attach_adapters(base: Any, usable: pd.DataFrame) -> Any:
    """The base model with every usable adapter loaded under its arm's name (eval mode); the base alone if none."""
    if usable.empty:
        return base.eval()
    from peft import PeftModel

    rows = list(usable.itertuples())
    with timed_load(f"{len(rows)} adapters"):
        model = PeftModel.from_pretrained(base, str(rows[0].adapter_path), adapter_name=label_of(rows[0]))
        for row in rows[1:]:
            model.load_adapter(str(row.adapter_path), adapter_name=label_of(row))
    return model.eval()
