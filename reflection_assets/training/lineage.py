"""The last step of a row's lineage: which adapters it was trained into.

`lora_checkpoint` writes `trained_rows` (arm, checkpoint_key, row_id): the rows the trainer kept,
not the rows it was given. Together with `selection.lineage.LINEAGE_SQL` (raw -> ... -> arm) this
follows a raw row id to the adapters trained on it. A separate query, since the table exists only
once an arm has been trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reflection_assets.database import connect

TRAINED_ROWS_TABLE = "trained_rows"

TRAINED_ON_SQL = f"""
SELECT t.arm, t.seed, t.checkpoint_key, c.status, c.adapter_path, c.base_model, c.mlflow_run_id
FROM {TRAINED_ROWS_TABLE} t
LEFT JOIN lora_checkpoint c ON c.arm = t.arm AND c.checkpoint_key = t.checkpoint_key
WHERE t.row_id = CAST(? AS VARCHAR)
ORDER BY t.arm, t.seed
"""


def record_trained_rows(store: str | Path, arm: str, seed: int, checkpoint_key: str, row_ids: Sequence[str]) -> None:
    """Replace this arm and seed's trained-on rows (none when skipped) in `store`, in one transaction."""
    with connect(store) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TRAINED_ROWS_TABLE} "
            "(arm VARCHAR, checkpoint_key VARCHAR, row_id VARCHAR, seed VARCHAR DEFAULT '0')"
        )
        # A warehouse from before seeds: its rows were seed 0.
        conn.execute(f"ALTER TABLE {TRAINED_ROWS_TABLE} ADD COLUMN IF NOT EXISTS seed VARCHAR DEFAULT '0'")
        conn.execute(f"DELETE FROM {TRAINED_ROWS_TABLE} WHERE arm = ? AND seed = ?", [arm, str(seed)])
        if row_ids:
            conn.executemany(
                f"INSERT INTO {TRAINED_ROWS_TABLE} (arm, checkpoint_key, row_id, seed) VALUES (?, ?, ?, ?)",
                [[arm, checkpoint_key, row_id, str(seed)] for row_id in row_ids],
            )
