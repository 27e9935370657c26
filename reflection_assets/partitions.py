"""Partitions: one dynamic partition per ingested dataset, one static partition per arm."""

import dagster as dg

DATASETS = "datasets"
dataset_partitions = dg.DynamicPartitionsDefinition(name=DATASETS)

# The method and the baselines trained at the selective set's size (plus `full`).
ARMS = ("selective", "reflected_all", "ifd_topk", "random", "full")
arm_partitions = dg.StaticPartitionsDefinition(list(ARMS))

DEMO_PARTITION = "demo"
