"""Teacher reflection assets: stage 1 rewrites the pair, stage 3 rewrites the current answer.

Every teacher call is cached by content in `llm_calls` (each written as it finishes), so a
re-run after a crash pays only for rows not yet done, and a re-run of unchanged
input makes no call at all. Caps stop a run cleanly, marking the rest `skipped`.
"""

from typing import Optional

import dagster as dg
import pandas as pd

from reflection_assets.defs.assets.common import (
    PARTITION_META,
    accounting_check,
    pairs_from_frame,
    stage_checks,
    stage_result,
    with_partition,
)
from reflection_assets.defs.partitions import dataset_partitions
from reflection_assets.documented import help_text, mirrored
from reflection_assets.schema import Pair
from reflection_assets.selection.pairs import current_pairs
from reflection_assets.teacher.cache import CallCache
from reflection_assets.teacher.estimate import estimate_cost
from reflection_assets.teacher.runner import reflect_rows
from reflection_assets.teacher.settings import ReflectionSettings
from reflection_assets.teacher.types import INSTRUCTION, RESPONSE, Stage
from resources.teacher import Teacher
from resources.tracking import MlflowTracking
from resources.warehouse import Warehouse

COMMON = dict(partitions_def=dataset_partitions, group_name="reflection", pool="teacher", metadata=PARTITION_META)


class ReflectionConfig(dg.Config):
    """Sampling, guidance and spending caps of one reflection stage (None: the teacher resource's setting)."""

    # Defaults and meaning: ReflectionSettings'; temperature and guided unset defer to the teacher.
    max_new_tokens: int = mirrored(ReflectionSettings, "max_new_tokens")
    temperature: Optional[float] = mirrored(
        ReflectionSettings, "temperature", default=None,
        description=help_text(ReflectionSettings, "temperature")
        + "; unset: the teacher's (REFLECTION_TEACHER_TEMPERATURE, default 0)",
    )
    guided: Optional[bool] = mirrored(
        ReflectionSettings, "guided", default=None,
        description=help_text(ReflectionSettings, "guided")
        + "; unset: the teacher's default (in-process: guided; HTTP: REFLECTION_TEACHER_GUIDED)",
    )
    critique_tokens: int = mirrored(ReflectionSettings, "critique_tokens")
    max_calls: Optional[int] = mirrored(ReflectionSettings, "max_calls")
    max_tokens: Optional[int] = mirrored(ReflectionSettings, "max_tokens")
    limit: Optional[int] = mirrored(ReflectionSettings, "limit")

    def settings(self, teacher: Teacher) -> ReflectionSettings:
        guided = teacher.guided_by_default if self.guided is None else self.guided
        return ReflectionSettings(
            max_new_tokens=self.max_new_tokens,
            temperature=teacher.temperature if self.temperature is None else self.temperature,
            top_p=teacher.top_p,
            seed=teacher.seed,
            guided=guided,
            critique_tokens=self.critique_tokens,
            max_calls=self.max_calls,
            max_tokens=self.max_tokens,
            limit=self.limit,
        )


def run_stage(
    context: dg.AssetExecutionContext,
    stage: Stage,
    pairs: list[Pair],
    config: ReflectionConfig,
    teacher: Teacher,
    warehouse: Warehouse,
    mlflow: MlflowTracking,
    raw: pd.DataFrame,
) -> dg.MaterializeResult[pd.DataFrame]:
    """Estimate, then reflect with the shared cache; metadata and MLflow get the counts."""
    settings = config.settings(teacher)
    cache = CallCache(warehouse.store)
    estimate = estimate_cost(pairs, stage, teacher.cache_identity(), cache, settings)
    context.log.info(f"cost estimate before spending: {estimate}")
    outcomes, stats = reflect_rows(pairs, stage, teacher, cache, settings, log=context.log.info)
    frame = with_partition(outcomes, context.partition_key)
    estimated = {f"estimate_{k}": v for k, v in estimate.items() if isinstance(v, int) and not isinstance(v, bool)}
    name = f"{stage}_reflections"
    return stage_result(
        context,
        mlflow,
        name,
        frame,
        numbers={**stats.metadata(), **estimated},
        params={
            "backend": stats.backend,
            "model": stats.model,
            "dtype": teacher.dtype_choice() or "the server's",
            "prompt_version": stats.prompt_version,
            "max_new_tokens": settings.max_new_tokens,
            "guided": settings.guided,
            "temperature": settings.temperature,
        },
        preview=["row_id", "outcome", "new_instruction", "new_output", "error"],
        check_results=[accounting_check(name, frame, raw)],
    )


@dg.asset(
    description="Stage 1 (teacher): criticise each pair and write a new self-contained instruction and answer.",
    check_specs=stage_checks("instruction_reflections"),
    kinds={"duckdb", "python"},
    **COMMON,
)
def instruction_reflections(
    context: dg.AssetExecutionContext,
    config: ReflectionConfig,
    raw_instructions: pd.DataFrame,
    teacher: Teacher,
    warehouse: Warehouse,
    mlflow: MlflowTracking,
):  # no return annotation: with check_specs the op has several outputs
    return run_stage(
        context, INSTRUCTION, pairs_from_frame(raw_instructions), config, teacher, warehouse, mlflow, raw_instructions
    )


@dg.asset(
    description="Stage 3 (teacher): criticise the answer of the pair stage 1 chose and write a better one.",
    check_specs=stage_checks("response_reflections"),
    kinds={"duckdb", "python"},
    **COMMON,
)
def response_reflections(
    context: dg.AssetExecutionContext,
    config: ReflectionConfig,
    raw_instructions: pd.DataFrame,
    instruction_ifd_scores: pd.DataFrame,
    teacher: Teacher,
    warehouse: Warehouse,
    mlflow: MlflowTracking,
):  # no return annotation: with check_specs the op has several outputs
    pairs = current_pairs(raw_instructions, instruction_ifd_scores)
    return run_stage(context, RESPONSE, pairs, config, teacher, warehouse, mlflow, raw_instructions)
