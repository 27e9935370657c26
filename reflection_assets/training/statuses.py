"""The `lora_checkpoint` table: its columns (what evaluation reads) and the outcomes of one training call."""

TRAINED = "trained"  # this call trained (from scratch or resumed) and finished the adapter
REUSED = "reused"  # a finished adapter with the same key existed: nothing trained
SKIPPED = "skipped"  # too few usable rows: nothing trained, `skipped_reason` says why

STATUSES = (TRAINED, REUSED, SKIPPED)

# One row per arm and seed. The first columns are what evaluation needs to attach an adapter; the rest report the run.
CHECKPOINT_KEY_COLUMNS = ("arm", "seed", "status", "skipped_reason", "checkpoint_key", "adapter_path", "base_model",
                          "base_fingerprint")
CHECKPOINT_COLUMNS = [*CHECKPOINT_KEY_COLUMNS, "rows_given", "rows_trained", "first_loss", "final_loss",
                      "train_seconds", "mlflow_run_id", "steps", "tokens_seen", "template"]
