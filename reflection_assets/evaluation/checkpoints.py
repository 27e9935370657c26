"""Reading the `lora_checkpoint` table (the training issue's contract) into models to evaluate.

One row per arm; arms whose status is "skipped" (or whose adapter folder is gone) are left out
with their reason. The adapters are attached to one loaded base model, each under its arm's
name, so generation can mix them in a batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from reflection_assets.evaluation.runner import BASE, ModelUnderTest
from reflection_assets.training.statuses import CHECKPOINT_KEY_COLUMNS, REUSED, SKIPPED, TRAINED

REQUIRED_COLUMNS = CHECKPOINT_KEY_COLUMNS


class CheckpointTableError(ValueError):
    """`lora_checkpoint` is malformed (names the missing columns or the bad rows)."""


def usable_checkpoints(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rows with an adapter to evaluate, and {arm: reason} for every arm left out."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise CheckpointTableError(f"lora_checkpoint lacks columns {missing}")
    duplicated = sorted(table.loc[table["arm"].duplicated(), "arm"].astype(str))
    if duplicated:
        raise CheckpointTableError(f"lora_checkpoint has several rows for arms {duplicated}")
    unknown = sorted(set(table["status"].astype(str)) - {TRAINED, REUSED, SKIPPED})
    if unknown:
        raise CheckpointTableError(f"lora_checkpoint has unknown statuses {unknown}")
    skipped: dict[str, str] = {}
    keep = []
    for row in table.sort_values("arm").itertuples():
        if row.status == SKIPPED:
            skipped[row.arm] = f"skipped in training: {row.skipped_reason or 'no reason given'}"
        elif not (Path(str(row.adapter_path)) / "adapter_config.json").is_file():
            skipped[row.arm] = f"adapter folder missing: {row.adapter_path}"
        else:
            keep.append(row.Index)
    return table.loc[keep], skipped


def models_under_test(usable: pd.DataFrame, adapter_names: Mapping[str, str] | None = None) -> list[ModelUnderTest]:
    """The base first, then one model per usable arm; its adapter is named after the arm (`attach_adapters`)
    unless `adapter_names` says otherwise ({arm: served name} on a vLLM server)."""
    names = adapter_names or {}
    return [ModelUnderTest(BASE, None, "")] + [
        ModelUnderTest(str(r.arm), names.get(str(r.arm), str(r.arm)), str(r.checkpoint_key))
        for r in usable.itertuples()
    ]


def attach_adapters(base: Any, usable: pd.DataFrame) -> Any:
    """The base model with every usable adapter loaded under its arm's name (eval mode); the base alone if none."""
    if usable.empty:
        return base.eval()
    from peft import PeftModel

    rows = list(usable.itertuples())
    model = PeftModel.from_pretrained(base, str(rows[0].adapter_path), adapter_name=str(rows[0].arm))
    for row in rows[1:]:
        model.load_adapter(str(row.adapter_path), adapter_name=str(row.arm))
    return model.eval()
