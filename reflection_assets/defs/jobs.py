"""Jobs: per-dataset work, the cross-dataset selection, and per-arm work.

One run cannot mix partitionings, so the graph runs as three jobs (the demo driver and the
inbox sensor launch them in order).
"""

import dagster as dg

from reflection_assets.defs.partitions import arm_partitions, dataset_partitions

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


def run_asset_selection(job: dg.JobDefinition) -> list[dg.AssetKey]:
    """Every asset `job` runs, for a run to name explicitly rather than leave as None ("the whole job").

    Automation ignores an input's update when the run that made it also selected the asset downstream
    (`executed_with_root_target` reads `run.asset_selection`, and None selects nothing there). A run left at
    None looks to automation like outside news for each of its later steps: those get requested again if the
    run fails before them, or if a tick reads a step's own materialization late while the run is still going.
    """
    return sorted(job.asset_layer.selected_asset_keys)
