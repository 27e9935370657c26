"""LoRA fine-tuning of the student on one arm's rows (no Dagster; weights load through `model_store`).

- `dataset`: the arm's rows as a conversational prompt-completion dataset in the scoring template.
- `settings`: every knob of a run in one frozen object (what the checkpoint key hashes).
- `checkpoints`: the key, the folder layout, the finished marker, the model card, resume discovery.
- `trainer`: `train_lora`, one readable function around TRL's `SFTTrainer`.
- `merge`: fold an adapter into its base model.
- `lineage`: which adapters a row was trained into (`trained_rows`).
"""

from reflection_assets.training.checkpoints import CheckpointLayout, checkpoint_key
from reflection_assets.training.dataset import TrainingExample, training_examples, training_pairs
from reflection_assets.training.settings import LoraSettings
from reflection_assets.training.trainer import TrainingOutcome, train_lora

__all__ = [
    "CheckpointLayout",
    "LoraSettings",
    "TrainingExample",
    "TrainingOutcome",
    "checkpoint_key",
    "train_lora",
    "training_examples",
    "training_pairs",
]
