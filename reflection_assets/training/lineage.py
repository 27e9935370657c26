"""The last step of a row's lineage: which adapters it was trained into.

`lora_checkpoint` writes `trained_rows` (arm, checkpoint_key, row_id): the rows the trainer kept,
not the rows it was given. Together with `selection.lineage.LINEAGE_SQL` (raw -> ... -> arm) this
follows a raw row id to the adapters trained on it. A separate query, since the table exists only
once an arm has been trained.
"""

TRAINED_ROWS_TABLE = "trained_rows"

TRAINED_ON_SQL = f"""
SELECT t.arm, t.seed, t.checkpoint_key, c.status, c.adapter_path, c.base_model, c.mlflow_run_id
FROM {TRAINED_ROWS_TABLE} t
LEFT JOIN lora_checkpoint c ON c.arm = t.arm AND c.checkpoint_key = t.checkpoint_key
WHERE t.row_id = CAST(? AS VARCHAR)
ORDER BY t.arm, t.seed
"""
