"""Partitions: one dynamic partition per ingested dataset, one static partition per arm."""

import dagster as dg

from reflection_assets.selection.columns import ARMS

DATASETS = "datasets"
dataset_partitions = dg.DynamicPartitionsDefinition(name=DATASETS)

# The method and the baselines trained at the selective set's size (plus `full`).
arm_partitions = dg.StaticPartitionsDefinition(list(ARMS))
