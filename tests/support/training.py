"""Training fixtures: a tiny Llama saved as a model folder (the real local-directory loading path) and rows."""

from __future__ import annotations

from pathlib import Path

from reflection_assets.schema import Pair, Turn


def save_tiny_model(folder: Path) -> Path:
    from tests.support.tiny_lm import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer).save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


def sample_pairs(n: int = 12) -> list[Pair]:
    """Short pairs in the tiny tokenizer's vocabulary; some with a system prompt or earlier turns."""
    topics = ["light", "plants", "water", "energy", "sugar", "leaves", "roots", "air", "soil", "sun", "rain", "seeds"]
    pairs = []
    for i in range(n):
        topic = topics[i % len(topics)]
        history = (Turn("user", "Hello"), Turn("assistant", "Hi")) if i % 4 == 0 else ()
        pairs.append(
            Pair(
                instruction=f"Explain {topic} {i}.",
                output=f"Plants use {topic}. [End] {i}",
                system="You explain." if i % 3 == 0 else "",
                history=history,
                row_id=f"r{i:02d}",
            )
        )
    return pairs


def seed_arm_tables(instance, rows: int) -> None:  # noqa: ANN001 - a DagsterInstance
    """`lora_checkpoint`'s upstream tables as the IO manager writes them: `rows` raw rows of dataset
    partition "t", all of them in the selective arm (for tests that start at training)."""
    import pandas as pd

    from reflection_assets.defs.partitions import DATASETS, SEEDS
    from reflection_assets.schema import RAW_COLUMNS

    pairs = sample_pairs(rows)
    raw = pd.DataFrame(
        [
            {
                "dataset": "t",
                "row_id": p.row_id,
                "source_file": "t.jsonl",
                "source_row": i + 1,
                "format": "alpaca",
                "system": p.system,
                "history": p.history_json(),
                "instruction": p.instruction,
                "input": p.input,
                "output": p.output,
            }
            for i, p in enumerate(pairs)
        ],
        columns=RAW_COLUMNS,
    )
    arm = pd.DataFrame(
        {
            "arm": "selective",
            "row_id": raw["row_id"],
            "instruction": raw["instruction"],
            "input": raw["input"],
            "output": raw["output"],
            "source": "raw",
            "seed": "0",
        }
    )
    write_tables({"raw_instructions": raw, "arm_datasets": arm})
    instance.add_dynamic_partitions(DATASETS, ["t"])
    instance.add_dynamic_partitions(SEEDS, ["0"])


def write_tables(tables: dict) -> None:
    """Create these tables (name -> DataFrame) in the warehouse, as the IO manager would have."""
    import duckdb

    from reflection_assets.paths import warehouse_path

    warehouse_path().parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(warehouse_path())) as conn:
        for name, frame in tables.items():
            conn.register("frame", frame)
            conn.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
            conn.unregister("frame")


def materialize_checkpoint(instance, base: str, config: dict):  # noqa: ANN001, ANN201 - Dagster types
    """`lora_checkpoint` of the selective arm on `base` with `config`, on the deployment's resources."""
    import dagster as dg

    from reflection_assets.defs.definitions import ASSET_MODULES
    from reflection_assets.defs.deployment import build_resources
    from reflection_assets.defs.partitions import arm_key
    from resources.student import StudentModel

    return dg.materialize(
        dg.load_assets_from_modules(ASSET_MODULES),
        selection=["lora_checkpoint"],
        partition_key=arm_key("selective"),
        instance=instance,
        resources={**build_resources(), "student": StudentModel(model=base)},
        run_config={"ops": {"lora_checkpoint": {"config": config}}},
        raise_on_error=False,
    )
