"""Student scoring assets: IFD/r-IFD of raw pairs and the two selective decisions.

The student's losses are cached by content in `student_scores`, so re-materializing any of these
after a crash or a change elsewhere runs forward passes only for sequences not yet scored.
"""

from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from reflection_assets.defs.assets.common import (
    PARTITION_META,
    Histogram,
    accounting_check,
    ok_values,
    pairs_from_frame,
    range_check,
    score_summary,
    stage_checks,
    stage_result,
    with_partition,
)
from reflection_assets.defs.partitions import dataset_partitions
from reflection_assets.http_retries import CallFailed
from reflection_assets.progress import Progress
from reflection_assets.schema import Pair
from reflection_assets.scoring.cache import StudentScoreCache
from reflection_assets.scoring.scorer import scores_frame
from reflection_assets.selection import decide_instruction, decide_response
from reflection_assets.selection.columns import ORIGINAL
from reflection_assets.selection.pairs import current_pairs, reflected_answer_pairs, reflected_instruction_pairs
from reflection_assets.served.client import ServedModelError
from reflection_assets.teacher.outcomes import REFLECTED
from resources.student import StudentModel
from resources.tracking import MlflowTracking
from resources.warehouse import Warehouse

COMMON = dict(partitions_def=dataset_partitions, group_name="scoring", pool="gpu", metadata=PARTITION_META)


class ForwardTokens:
    """Progress callback that also remembers how many tokens went through the model (0: all cached)."""

    def __init__(self, log, label: str):
        self.progress = Progress(log, label, unit="tokens")
        self.total = 0

    def __call__(self, done: int, total: int) -> None:
        self.total = total
        self.progress(done, total)


def score(
    context: dg.AssetExecutionContext,
    student: StudentModel,
    warehouse: Warehouse,
    pairs: list[Pair],
    label: str,
    ifd: bool = True,
    rifd: bool = True,
) -> tuple[pd.DataFrame, int]:
    """Score pairs through the shared cache, logging progress with rate and ETA.

    Returns the scores and the number of tokens that needed a forward pass.
    """
    tracker = ForwardTokens(context.log.info, label)
    try:
        loaded = student.load()
        context.log.info(f"student: {loaded.describe()}")
        frame = scores_frame(
            pairs,
            loaded,
            student.scoring_config(),
            ifd=ifd,
            rifd=rifd,
            cache=StudentScoreCache(warehouse.store),
            progress=tracker,
        )
    except ServedModelError as error:  # the server cannot score (no prompt log-probabilities, wrong model)
        raise dg.Failure(str(error), allow_retries=False) from None
    except CallFailed as error:  # the server stayed down past the retries: what was scored is cached
        raise dg.Failure(f"the student server failed: {error}") from None
    return frame, tracker.total


@dataclass(frozen=True)
class ScoreStage:
    """What a scoring asset shows besides its table: its numbers, one histogram, the preview, the ranges checked."""

    name: str
    numbers: Callable[[pd.DataFrame], dict]
    # metadata key, MLflow file, {label: (column, status column or None)}, title, x label
    histogram: tuple[str, str, dict[str, tuple[str, str | None]], str, str]
    ranges: list[tuple[str, str]]  # (score column, its status column)
    preview: list[str] | None = None

    def result(
        self,
        context: dg.AssetExecutionContext,
        mlflow: MlflowTracking,
        frame: pd.DataFrame,
        raw: pd.DataFrame,
        student: StudentModel,
        computed: int,
    ) -> dg.MaterializeResult:
        key, artifact, series, title, xlabel = self.histogram
        values = {label: ok_values(frame, column, status) if status else _finite(frame[column])
                  for label, (column, status) in series.items()}
        return stage_result(
            context, mlflow, self.name, frame,
            numbers=self.numbers(frame), params=student_params(student),
            metadata={"tokens_computed": dg.MetadataValue.int(computed)},
            histograms=[Histogram(key, artifact, values, title, xlabel)],
            preview=self.preview,
            check_results=[accounting_check(self.name, frame, raw), range_check(self.name, frame, self.ranges)],
        )  # fmt: skip


RAW = ScoreStage(
    "raw_ifd_scores", score_summary,
    ("ifd_histogram", "raw_ifd_histogram.png", {"IFD": ("ifd_ppl", "ifd_status"), "r-IFD": ("rifd_ppl", "rifd_status")},
     "IFD / r-IFD of raw pairs", "score (exp(loss_cond - loss_alone))"),
    [("ifd_ppl", "ifd_status"), ("rifd_ppl", "rifd_status")],
)  # fmt: skip
INSTRUCTION = ScoreStage(
    "instruction_ifd_scores", lambda frame: choice_counts(frame, "instruction"),
    ("ifd_histogram", "instruction_ifd_histogram.png",
     {ORIGINAL: ("ifd_original", None), REFLECTED: ("ifd_reflected", None)},
     "IFD of original vs reflected instruction pairs", "IFD"),
    [("ifd_original", "ifd_original_status"), ("ifd_reflected", "ifd_reflected_status")],
    ["row_id", "instruction_choice", "instruction_reason", "ifd_original", "ifd_reflected"],
)  # fmt: skip
RESPONSE = ScoreStage(
    "response_scores", lambda frame: choice_counts(frame, "response"),
    ("rifd_histogram", "response_rifd_histogram.png",
     {"current answer": ("current_rifd", None), "reflected answer": ("reflected_rifd", None)},
     "r-IFD of current vs reflected answers", "r-IFD"),
    [("final_ifd", "final_ifd_status"), ("final_rifd", "final_rifd_status"),
     ("current_rifd", "current_rifd_status"), ("reflected_rifd", "reflected_rifd_status")],
    ["row_id", "response_choice", "response_reason", "final_ifd", "final_rifd"],
)  # fmt: skip


@dg.asset(
    description="IFD and r-IFD of the raw pairs under the student (Cherry-style baseline; input of ifd_topk).",
    check_specs=stage_checks("raw_ifd_scores", scores=True),
    kinds={"duckdb", "pytorch"},
    **COMMON,
)
def raw_ifd_scores(
    context: dg.AssetExecutionContext,
    raw_instructions: pd.DataFrame,
    student: StudentModel,
    warehouse: Warehouse,
    mlflow: MlflowTracking,
):  # no return annotation: with check_specs the op has several outputs
    scores, computed = score(context, student, warehouse, pairs_from_frame(raw_instructions), RAW.name)
    frame = with_partition(scores, context.partition_key)
    return RAW.result(context, mlflow, frame, raw_instructions, student, computed)


@dg.asset(
    description="Stage 1 (student): keep the reflected instruction pair when its IFD is higher than the original's.",
    check_specs=stage_checks("instruction_ifd_scores", scores=True),
    kinds={"duckdb", "pytorch"},
    **COMMON,
)
def instruction_ifd_scores(
    context: dg.AssetExecutionContext,
    raw_instructions: pd.DataFrame,
    raw_ifd_scores: pd.DataFrame,
    instruction_reflections: pd.DataFrame,
    student: StudentModel,
    warehouse: Warehouse,
    mlflow: MlflowTracking,
):  # no return annotation: with check_specs the op has several outputs
    reflected_pairs = reflected_instruction_pairs(raw_instructions, instruction_reflections)
    reflected_scores, computed = score(context, student, warehouse, reflected_pairs, INSTRUCTION.name, rifd=False)
    decisions = decide_instruction(raw_instructions, instruction_reflections, raw_ifd_scores, reflected_scores)
    frame = with_partition(decisions, context.partition_key)
    return INSTRUCTION.result(context, mlflow, frame, raw_instructions, student, computed)


@dg.asset(
    description=(
        "Stage 2 (student): IFD and r-IFD of the current pair and of its reflected answer; "
        "the answer with lower r-IFD wins."
    ),
    check_specs=stage_checks("response_scores", scores=True),
    kinds={"duckdb", "pytorch"},
    **COMMON,
)
def response_scores(
    context: dg.AssetExecutionContext,
    raw_instructions: pd.DataFrame,
    instruction_ifd_scores: pd.DataFrame,
    response_reflections: pd.DataFrame,
    student: StudentModel,
    warehouse: Warehouse,
    mlflow: MlflowTracking,
):  # no return annotation: with check_specs the op has several outputs
    current = current_pairs(raw_instructions, instruction_ifd_scores)
    current_scores, computed_current = score(context, student, warehouse, current, f"{RESPONSE.name} (current)")
    reflected = reflected_answer_pairs(raw_instructions, instruction_ifd_scores, response_reflections)
    reflected_scores, computed_reflected = score(context, student, warehouse, reflected, f"{RESPONSE.name} (reflected)")
    decisions = decide_response(instruction_ifd_scores, response_reflections, current_scores, reflected_scores)
    frame = with_partition(decisions, context.partition_key)
    return RESPONSE.result(context, mlflow, frame, raw_instructions, student, computed_current + computed_reflected)


def choice_counts(frame: pd.DataFrame, stage: str) -> dict[str, int]:
    """How many rows took each choice, and for which reason, at a selective stage."""
    counts = {f"choice_{k}": int(v) for k, v in frame[f"{stage}_choice"].value_counts().items()}
    reasons = {f"reason_{k}": int(v) for k, v in frame[f"{stage}_reason"].value_counts().items()}
    return {**counts, **reasons}


def student_params(student: StudentModel) -> dict:
    names = ("model", "template", "start_token", "max_length", "dtype", "device")
    served = ("base_url", "served_model") if student.is_served else ()  # never the API key
    return {k: getattr(student, k) for k in names + served}


def _finite(series: pd.Series) -> list[float]:
    return [float(v) for v in pd.to_numeric(series, errors="coerce").dropna().tolist()]
