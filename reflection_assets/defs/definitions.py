"""The code location: every asset, check, job, sensor, schedule and resource of reflection-tuning."""

import dagster as dg

from reflection_assets.defs.assets import evaluation, ingest, reflection, scoring, selection, training
from reflection_assets.defs.automation import automation_sensor, evaluation_schedule, with_automation
from reflection_assets.defs.code_versions import with_code_versions
from reflection_assets.defs.deployment import build_executor, build_resources
from reflection_assets.defs.jobs import arms_job, dataset_job, evaluation_job, selection_job
from sensors.inbox import inbox_sensor

ASSET_MODULES = [ingest, reflection, scoring, selection, training, evaluation]
ASSETS = with_code_versions(with_automation(dg.load_assets_from_modules(ASSET_MODULES)))

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
    jobs=[dataset_job, selection_job, arms_job, evaluation_job],
    sensors=[inbox_sensor, automation_sensor],
    schedules=[evaluation_schedule()],
    resources=build_resources(),
    executor=build_executor(),
)
