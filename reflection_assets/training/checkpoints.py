"""Where a run's files live, what keys them, and when a run counts as finished.

`<root>/<name>/<key>/`:
- `trainer/checkpoint-N/`: the Trainer's own saves, what an interrupted run resumes from (deleted
  once finished);
- `adapter/`: the PEFT LoRA adapter (safetensors), the tokenizer, the model card (README.md) and
  `training_args.json`, loadable as it is by PEFT, vLLM and lm-eval;
- `result.json`: the run's numbers (losses, rows, steps), read back when the adapter is reused;
- `tracking.json`: the MLflow run that logged it (written after the marker, by the caller);
- `FINISHED`: written last, so a run killed anywhere before it is never mistaken for a finished one
  (TRL writes README.md even for an interrupted run, so the card proves nothing).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reflection_assets.hashing import content_hash
from reflection_assets.training.dataset import TrainingExample, examples_fingerprint
from reflection_assets.training.settings import LoraSettings

KEY_VERSION = 1  # bump when the training recipe changes in a way the settings do not show
NUMERIC_LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes")
CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose updates can change the numbers of a run."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in NUMERIC_LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def device_kind(device: str) -> str:
    """cpu or cuda: the kind of device changes numerics, its index does not."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device.split(":")[0]


def checkpoint_key(
    base_fingerprint: str,
    examples: Sequence[TrainingExample],
    settings: LoraSettings,
    template: str,
    versions: dict[str, str] | None = None,
    launch: dict | None = None,
) -> str:
    """Hash of the base model, the rows (ids and content), the config, the numeric libraries and the
    launch (`distributed.launch_fingerprint`: the global batch is `batch_size` x processes; FSDP,
    ZeRO-3 and the launcher's mixed precision change the numbers too)."""
    fields = {
        "version": KEY_VERSION,
        "base": base_fingerprint,
        "template": template,
        "rows": examples_fingerprint(examples),
        "settings": settings.key_fields(),
        "device_kind": device_kind(settings.device),
        "libraries": versions if versions is not None else library_versions(),
    }
    if launch:  # only then: one-process keys stay what they were, so finished adapters are reused
        fields["launch"] = launch
    return content_hash(fields, length=16)


@dataclass(frozen=True)
class CheckpointLayout:
    """The folder of one keyed run."""

    folder: Path

    @classmethod
    def under(cls, root: Path, name: str, key: str) -> CheckpointLayout:
        return cls(Path(root).resolve() / name / key)

    @property
    def trainer_dir(self) -> Path:
        return self.folder / "trainer"

    @property
    def adapter_dir(self) -> Path:
        return self.folder / "adapter"

    @property
    def result_file(self) -> Path:
        return self.folder / "result.json"

    @property
    def marker(self) -> Path:
        return self.folder / "FINISHED"

    def is_finished(self) -> bool:
        return (
            self.marker.is_file()
            and self.result_file.is_file()
            and (self.adapter_dir / "adapter_config.json").is_file()
        )

    def last_trainer_checkpoint(self) -> str | None:
        """Newest complete Trainer checkpoint, or None (what `resume_from_checkpoint` takes).

        A save is not atomic: a checkpoint counts only once its `trainer_state.json`, written last,
        is there. A half-written newer one is ignored and an older complete one used.
        """
        if not self.trainer_dir.is_dir():
            return None
        steps = []
        for entry in self.trainer_dir.iterdir():
            match = CHECKPOINT_DIR.match(entry.name)
            if match and (entry / "trainer_state.json").is_file():
                steps.append((int(match.group(1)), entry))
        return str(max(steps)[1]) if steps else None

    @property
    def tracking_file(self) -> Path:
        """Which tracking run describes this adapter (written by the caller after the marker)."""
        return self.folder / "tracking.json"

    def read_tracking(self) -> dict:
        try:
            return json.loads(self.tracking_file.read_text())
        except (OSError, ValueError):
            return {}

    def write_tracking(self, values: dict) -> None:
        write_atomic(self.tracking_file, json.dumps(values, sort_keys=True))

    def write_result(self, result: dict) -> None:
        write_atomic(self.result_file, json.dumps(result, indent=1, sort_keys=True, default=str))

    def read_result(self) -> dict:
        return json.loads(self.result_file.read_text())

    def mark_finished(self) -> None:
        """Written last; then the Trainer's intermediate checkpoints are no longer needed."""
        write_atomic(self.marker, "finished\n")
        shutil.rmtree(self.trainer_dir, ignore_errors=True)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(text)
    os.replace(staging, path)


def model_card(
    *,
    base_model: str,
    base_fingerprint: str,
    name: str,
    key: str,
    template: str,
    settings: LoraSettings,
    rows_trained: int,
    steps: int,
    losses: str,
) -> str:
    """A short README for the adapter folder: what it was trained from, how, and how to load it."""
    params = "\n".join(f"| {k} | {v} |" for k, v in settings.as_params().items())
    return f"""---
library_name: peft
base_model: {base_model}
tags: [lora, sft, trl, reflection-tuning]
---
# LoRA adapter `{name}` ({key})

Fine-tuned with TRL `SFTTrainer` + PEFT LoRA on {rows_trained} rows of the `{name}` set
(Selective Reflection-Tuning), prompts in the `{template}` template, loss on the completion only.

- base model: `{base_model}` (fingerprint `{base_fingerprint}`)
- optimizer steps: {steps}; training {losses}

| hyper-parameter | value |
|---|---|
{params}

Load it with `PeftModel.from_pretrained(base, "<this folder>")`; merge it into the base with
`reflection_assets.training.merge.merge_adapter(base, "<this folder>", "<output folder>")`.
"""
