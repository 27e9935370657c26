"""Outcomes of one training call (the `status` column of `lora_checkpoint`)."""

TRAINED = "trained"  # this call trained (from scratch or resumed) and finished the adapter
REUSED = "reused"  # a finished adapter with the same key existed: nothing trained
SKIPPED = "skipped"  # too few usable rows: nothing trained, `skipped_reason` says why

STATUSES = (TRAINED, REUSED, SKIPPED)
