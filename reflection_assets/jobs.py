"""Jobs: per-dataset work, the cross-dataset selection, and per-arm work.

One run cannot mix partitionings, so the graph runs as three jobs (the demo driver and the
inbox sensor launch them in order).
"""

import dagster as dg

from reflection_assets.partitions import arm_partitions, dataset_partitions

DATASET_GROUPS = ("ingest", "reflection", "scoring")

dataset_job = dg.define_asset_job(
    "dataset_job",
    selection=dg.AssetSelection.groups(*DATASET_GROUPS),
    partitions_def=dataset_partitions,
    description="Ingest, reflect and score one dataset partition.",
)

selection_job = dg.define_asset_job(
    "selection_job",
    selection=dg.AssetSelection.groups("selection"),
    description="Select across all dataset partitions.",
)

arms_job = dg.define_asset_job(
    "arms_job",
    selection=dg.AssetSelection.groups("arms", "training"),
    partitions_def=arm_partitions,
    description="Build, train and evaluate one arm.",
)

evaluation_job = dg.define_asset_job(
    "evaluation_job",
    selection=dg.AssetSelection.groups("evaluation"),
    description="Evaluate the base and every trained arm on the same suites, then the ablation report.",
)
