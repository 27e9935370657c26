"""`reflection-tuning lineage ROW_ID`: one raw row through every stage of the warehouse, and the adapters trained
on it.

It reads the warehouse the environment names: the local DuckDB file, or (REFLECTION_STORAGE=shared) the Delta
tables and the Postgres registries, so any machine of a shared deployment answers the same. Exit 0 with the
row's lineage, 1 when the warehouse has no such row, 2 when a stage has not been built yet or the storage
settings are wrong (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys

from reflection_assets.database import table_exists
from reflection_assets.selection.lineage import LINEAGE_COLUMNS, LINEAGE_SQL
from reflection_assets.training.lineage import TRAINED_ON_SQL, TRAINED_ROWS_TABLE

# The asset tables LINEAGE_SQL reads, in the order the graph builds them.
LINEAGE_TABLES = ("raw_instructions", "instruction_reflections", "instruction_ifd_scores", "response_reflections",
                  "response_scores", "selected_dataset", "arm_datasets")
SHOWN = ["step", "stage", "version", "instruction", "output", "outcome", "ifd", "rifd", "decision", "reason", "arm"]
TEXT_WIDTH = 48  # characters of a text column shown in the table (--json gives them whole)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("row_id", help="a raw row's id (raw_instructions.row_id; the UI's previews show it)")
    parser.add_argument("--json", action="store_true", help="print every column as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from reflection_assets.storage import StorageSettingError
    from resources.warehouse import Warehouse

    try:
        warehouse = Warehouse.from_env()
        with warehouse.connection(read_only=True) as conn:
            missing = [table for table in LINEAGE_TABLES if not table_exists(conn, table)]
            if missing:
                print(f"error: {warehouse.describe()} has no {', '.join(missing)} yet: build the graph first "
                      "(reflection-tuning demo, or the jobs in the UI)", file=sys.stderr)
                return 2
            lineage = conn.execute(LINEAGE_SQL, [args.row_id]).df()
            trained = (conn.execute(TRAINED_ON_SQL, [args.row_id]).df()
                       if table_exists(conn, TRAINED_ROWS_TABLE) and table_exists(conn, "lora_checkpoint") else None)
    except StorageSettingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if lineage.empty:
        print(f"row {args.row_id!r} is not in {warehouse.describe()}", file=sys.stderr)
        return 1
    trained_rows = [] if trained is None else trained.to_dict("records")
    if args.json:
        print(json.dumps({"row_id": args.row_id, "lineage": lineage[LINEAGE_COLUMNS].to_dict("records"),
                          "trained_into": trained_rows}, default=str, indent=1))
        return 0
    print(render(args.row_id, lineage, trained_rows))
    return 0


def render(row_id: str, lineage, trained_rows: list[dict]) -> str:  # noqa: ANN001 - a pandas frame
    from reflection_assets.commands.console import markdown_table

    shown = lineage.astype(object).where(lineage.notna(), None).to_dict("records")
    for row in shown:
        for column in ("instruction", "output", "reason"):
            text = row.get(column)
            if isinstance(text, str) and len(text) > TEXT_WIDTH:
                row[column] = text[: TEXT_WIDTH - 1].replace("\n", " ") + "…"
            elif isinstance(text, str):
                row[column] = text.replace("\n", " ")
    lines = [f"Lineage of row {row_id}:", markdown_table(shown, SHOWN)]
    if trained_rows:
        lines += ["", "Trained into:", markdown_table(trained_rows, ["arm", "seed", "checkpoint_key", "status",
                                                                      "adapter_path", "mlflow_run_id"])]
    else:
        lines += ["", "Not trained into any adapter yet."]
    return "\n".join(lines)
