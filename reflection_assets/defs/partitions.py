"""Partitions: one dynamic partition per ingested dataset; one partition per arm x training seed.

Seeds are a dimension of their own, so each replicate (an arm's rows drawn with that seed, and its
adapter trained with it) is its own partition in the UI and in the lineage. The seed dimension is
dynamic: a driver registers the seeds it runs (`demo --seeds 2`, `experiment --seeds 3`), the
inbox sensor registers seed 0, and automation materializes every registered seed.
"""

import dagster as dg

from reflection_assets.selection.columns import ARMS

DATASETS = "datasets"
SEEDS = "seeds"
ARM, SEED = "arm", "seed"
FIRST_SEED = "0"
dataset_partitions = dg.DynamicPartitionsDefinition(name=DATASETS)
seed_partitions = dg.DynamicPartitionsDefinition(name=SEEDS)

# The method and the baselines trained at the selective set's size (plus `full`), each per seed.
arm_partitions = dg.MultiPartitionsDefinition(
    {ARM: dg.StaticPartitionsDefinition(list(ARMS)), SEED: seed_partitions}
)
# Where each dimension lives in the arm tables (the DuckDB IO manager's partition_expr).
ARM_PARTITION_EXPR = {ARM: ARM, SEED: SEED}


def arm_key(arm: str, seed: int | str = FIRST_SEED) -> dg.MultiPartitionKey:
    """The partition of one arm and seed (its string form is 'arm|seed')."""
    return dg.MultiPartitionKey({ARM: arm, SEED: str(seed)})


def arm_and_seed(partition_key: str) -> tuple[str, int]:
    """('random', 1) from the partition key 'random|1' (or a MultiPartitionKey)."""
    keys = getattr(partition_key, "keys_by_dimension", None)
    if keys is None:
        arm, _, seed = str(partition_key).partition("|")
        keys = {ARM: arm, SEED: seed or FIRST_SEED}
    return keys[ARM], int(keys[SEED])


def seed_names(count: int) -> list[str]:
    """The first `count` seeds' partition keys: '0', '1', ..."""
    return [str(s) for s in range(max(1, count))]
