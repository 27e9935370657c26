"""The code location: every asset, check, job, sensor and resource of reflection-tuning."""

import dagster as dg

from reflection_assets.assets import ingest, reflection, scoring, selection, training
from reflection_assets.deployment import build_resources
from reflection_assets.jobs import arms_job, dataset_job, selection_job
from sensors.inbox import inbox_sensor

ASSET_MODULES = [ingest, reflection, scoring, selection, training]

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(ASSET_MODULES),
    asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
    jobs=[dataset_job, selection_job, arms_job],
    sensors=[inbox_sensor],
    resources=build_resources(),
)
