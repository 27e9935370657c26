"""Register dataset partitions (with their source files) and seed partitions, as a node's driver would, in the
instance and the store the environment names (DAGSTER_HOME, REFLECTION_STORAGE): run as a script in a node's
environment, `python tests/support/register_partitions.py alpha=/path/alpha.jsonl --seeds 0 1`."""

from __future__ import annotations

import argparse

import dagster as dg

from reflection_assets.defs.partitions import DATASETS, SEEDS
from reflection_assets.ingest.registry import DatasetSource, register_source
from reflection_assets.storage import storage_from_env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("datasets", nargs="*", help="key=source file")
    parser.add_argument("--seeds", nargs="*", default=[])
    args = parser.parse_args()
    instance, store = dg.DagsterInstance.get(), storage_from_env().store()
    keys = []
    for pair in args.datasets:
        key, source = pair.split("=", 1)
        register_source(store, key, DatasetSource(source))
        keys.append(key)
    if keys:
        instance.add_dynamic_partitions(DATASETS, keys)
    if args.seeds:
        instance.add_dynamic_partitions(SEEDS, args.seeds)


if __name__ == "__main__":
    main()
