"""Each arm's LoRA adapter as the student's vLLM server knows it: a served name per checkpoint row.

An adapter the server already serves (`--lora-modules`, or loaded by an earlier run) is found by
its folder: `/v1/models` lists it with `root` = its path. Otherwise it is loaded at run time under
`<arm>-<first 8 of the checkpoint key>` (a new checkpoint gets a new name, so a stale adapter is
never reused under its arm's name). An arm neither way can serve stops the run, naming every such
arm, its folder, why, and how to serve it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from reflection_assets.evaluation.checkpoints import label_of
from reflection_assets.served.client import ServedModelError, ServedStudent


def same_folder(a: str, b: str) -> bool:
    return bool(a) and bool(b) and os.path.realpath(a) == os.path.realpath(b)


def runtime_name(arm: str, checkpoint_key: str) -> str:
    return f"{arm}-{checkpoint_key[:8]}"


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # what --max-lora-rank accepts


def lora_rank(folder: str) -> int | None:
    try:
        return int(json.loads((Path(folder) / "adapter_config.json").read_text())["r"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def served_adapters(server: ServedStudent, usable: pd.DataFrame) -> dict[str, str]:
    """{model label: served name} for every usable `lora_checkpoint` row (arm, seed, adapter_path, checkpoint_key)."""
    listed = [
        card for card in server.models()
        if str(card.get("id")) != server.model and card.get("parent") in (None, server.model)
    ]
    names: dict[str, str] = {}
    missing: dict[str, tuple[str, str]] = {}  # arm -> (folder, reason)
    for row in usable.itertuples():
        arm, folder = label_of(row), os.path.realpath(str(row.adapter_path))  # the arm, or arm-seedN
        card = next((c for c in listed if same_folder(str(c.get("root") or ""), folder)), None)
        if card is not None:
            names[arm] = str(card["id"])
            continue
        name = runtime_name(arm, str(row.checkpoint_key))
        if any(str(c.get("id")) == name for c in listed):  # loaded by an earlier run from another folder:
            names[arm] = name  # the checkpoint key names the weights, so it is the same adapter
            continue
        reason = server.load_adapter(name, folder)
        if reason is None:
            names[arm] = name
        else:
            missing[arm] = (folder, reason)
    if missing:
        raise ServedModelError(missing_message(server, missing))
    return names


def missing_message(server: ServedStudent, missing: dict[str, tuple[str, str]]) -> str:
    largest = max((r for folder, _ in missing.values() if (r := lora_rank(folder)) is not None), default=16)
    rank = next((r for r in VLLM_LORA_RANKS if r >= largest), largest)
    modules = " ".join(f"{arm}={folder}" for arm, (folder, _) in sorted(missing.items()))
    lines = [f"the student server at {server.base_url} does not serve the adapters of {len(missing)} arm(s):"]
    lines += [f"  {arm}: {folder} ({reason})" for arm, (folder, reason) in sorted(missing.items())]
    lines.append(
        f"Serve them with `vllm serve <weights> --served-model-name {server.model} --enable-lora "
        f"--max-lora-rank {rank} --lora-modules {modules}`, or start the server with "
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (and --enable-lora) so they are loaded at run time; "
        "the server must see the adapter folders at these paths."
    )
    return "\n".join(lines)
