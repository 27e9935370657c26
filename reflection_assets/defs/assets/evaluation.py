"""Evaluation assets: every arm's adapter and the base on the same suites, then the ablation report.

`eval_scores` loads the base model once, attaches every trained adapter, and scores all models in
one shared pass (outputs cached by content); with a served student it loads only the tokenizer and
evaluates on the same vLLM server, each adapter under its served name. `ablation_report` turns the
per-item scores into verdicts over training runs and items. The work is in
`reflection_assets.evaluation` (and `reflection_assets.served`).
"""

from dataclasses import dataclass
from typing import Any, Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from reflection_assets.defs.assets.common import ALL, stage_result
from reflection_assets.defs.deployment import judge_description
from reflection_assets.documented import help_text, mirrored
from reflection_assets.evaluation.cache import EvalOutputCache
from reflection_assets.evaluation.checkpoints import (
    CheckpointTableError,
    attach_adapters,
    models_under_test,
    usable_checkpoints,
)
from reflection_assets.evaluation.contamination import flag_contaminated
from reflection_assets.evaluation.plot import intervals_png
from reflection_assets.evaluation.report import Ablation, ReportSettings, ablation
from reflection_assets.evaluation.runner import SUITE_MAX_NEW_TOKENS, EvalSettings, Evaluator, build_items, evaluate
from reflection_assets.evaluation.suites import EvalDataError, EvalItem, default_eval_file
from reflection_assets.evaluation.summary import contaminated_instructions, evaluation_numbers, truncation_per_suite
from reflection_assets.http_retries import CallFailed
from reflection_assets.model_store import ModelReferenceError, load_model_and_tokenizer, load_tokenizer, local_dir
from reflection_assets.plots import png_markdown
from reflection_assets.scoring.templates import default_template
from reflection_assets.selection.decontamination import DecontaminationError, ngram_size
from reflection_assets.served.adapters import served_adapters
from reflection_assets.served.client import ServedModelError
from reflection_assets.served.evaluation import ServedEvalBackend
from reflection_assets.training.statuses import SKIPPED
from resources.judge import JudgeModel
from resources.student import StudentModel
from resources.teacher import Teacher
from resources.tracking import MlflowTracking
from resources.warehouse import Warehouse

METHOD_CHECK = "selective_not_worse"
CONTROL_CHECK = "positive_control_detects_training"
SUITE_OVERLAP = (
    "judge and gsm8k items come from the same held-out file as heldout_nll (the judge takes its open-ended "
    "rows, gsm8k its '#### N' rows): heldout_nll scores the reference answer teacher-forced, the others "
    "score generated answers, so the suites share instructions but not what they measure"
)


class EvalConfig(dg.Config):
    """What is evaluated and how; every value is recorded with the scores."""

    # The knobs EvalSettings also has take its default and meaning; "" and 0 here stand for its unset.
    eval_file: str = mirrored(
        EvalSettings, "eval_file", default="",
        description=help_text(EvalSettings, "eval_file") + "; '': $REFLECTION_EVAL_FILE or the demo's eval set",
    )
    gsm8k_file: str = mirrored(
        EvalSettings, "gsm8k_file", default="",
        description=help_text(EvalSettings, "gsm8k_file") + "; '': the eval file's GSM8K-style rows",
    )
    items_per_suite: int = mirrored(EvalSettings, "items_per_suite")
    seed: int = mirrored(EvalSettings, "seed")
    max_new_tokens: dict[str, int] = Field(
        default={},
        description="tokens per generated suite, over the defaults ("
        + ", ".join(f"{suite} {tokens}" for suite, tokens in sorted(SUITE_MAX_NEW_TOKENS.items()))
        + ")",
    )
    response_style: Literal["plain", "reflection"] = mirrored(EvalSettings, "response_style")
    judge: bool = Field(default=True, description="false: no judge suite (the judge model is not called)")
    lm_eval: bool = mirrored(EvalSettings, "lm_eval")
    batch_tokens: int = mirrored(
        EvalSettings, "batch_tokens", default=0, description=help_text(EvalSettings, "batch_tokens") + "; 0: unset"
    )

    def settings(self, template: str) -> EvalSettings:
        eval_file = self.eval_file or default_eval_file()
        return EvalSettings(
            eval_file=eval_file,
            gsm8k_file=self.gsm8k_file or eval_file,
            items_per_suite=self.items_per_suite,
            seed=self.seed,
            max_new_tokens={**SUITE_MAX_NEW_TOKENS, **self.max_new_tokens},
            template=template,
            response_style=self.response_style,
            batch_tokens=self.batch_tokens or None,
            lm_eval=self.lm_eval,
        )


@dg.asset(
    ins={"lora_checkpoint": ALL, "arm_datasets": ALL},
    group_name="evaluation",
    pool="gpu",
    kinds={"duckdb", "python"},
    description="The base model and every arm's adapter on the same suites: one row per model x suite x item x metric.",
)
def eval_scores(
    context: dg.AssetExecutionContext,
    config: EvalConfig,
    lora_checkpoint: pd.DataFrame,
    arm_datasets: pd.DataFrame,
    student: StudentModel,
    teacher: Teacher,
    judge: JudgeModel,
    warehouse: Warehouse,
    mlflow: MlflowTracking,
) -> dg.MaterializeResult[pd.DataFrame]:
    usable, skipped = adapters_to_evaluate(context, lora_checkpoint, student, warehouse)
    run = run_evaluation(context, config, usable, student, teacher, judge, warehouse)
    contaminated = flag_contaminated(run.scores, run.items, arm_datasets, run.ngram)
    if contaminated:
        context.log.warning(
            f"{len(contaminated)} eval items share a {run.ngram}-gram with a training row; the report leaves them out"
        )
    numbers = evaluation_numbers(
        run.scores, run.evaluator.stats, models=len(run.models), dropped=len(run.dropped), skipped=len(skipped),
        contaminated=len(contaminated),
    )
    return stage_result(
        context, mlflow, "eval_scores", run.scores, numbers=numbers, params=run.params(skipped),
        metadata=run.metadata(skipped), preview=["model", "suite", "metric", "value", "output"],
    )


@dataclass
class EvaluationRun:
    """One evaluation pass: what was evaluated, on which items, and the scores; it states its own metadata."""

    evaluator: Evaluator
    models: list[Any]
    items: dict[str, list[EvalItem]]
    dropped: list[str]
    adapter_names: dict[str, str]
    scores: pd.DataFrame
    ngram: int  # the exports' decontamination n-gram: both checks call the same rows overlapping

    def labels(self) -> list[str]:
        return [m.label for m in self.models]

    def params(self, skipped: list) -> dict[str, Any]:
        return {
            **self.evaluator.settings.record(), "models": self.labels(), "skipped": skipped,
            "student_backend": self.evaluator.backend.describe(),  # never the key: describe() leaves it out
            "served_adapters": self.adapter_names,
        }

    def metadata(self, skipped: list) -> dict[str, Any]:
        return {
            "models_evaluated": dg.MetadataValue.json(self.labels()),
            "arms_skipped": dg.MetadataValue.json(skipped),
            "truncated_per_suite": dg.MetadataValue.json(truncation_per_suite(self.scores)),
            "items_dropped": dg.MetadataValue.json(self.dropped),
            "suite_overlap": dg.MetadataValue.text(SUITE_OVERLAP),
            "judge": dg.MetadataValue.text(self.evaluator.judge_name or "not run"),
            "contaminated_items": dg.MetadataValue.json(contaminated_instructions(self.scores)),
            "settings": dg.MetadataValue.json(self.evaluator.settings.record()),
            "student_backend": dg.MetadataValue.text(self.evaluator.backend.describe()),
            "served_adapters": dg.MetadataValue.json(self.adapter_names),
        }


def run_evaluation(
    context: dg.AssetExecutionContext,
    config: EvalConfig,
    usable: pd.DataFrame,
    student: StudentModel,
    teacher: Teacher,
    judge: JudgeModel,
    warehouse: Warehouse,
) -> EvaluationRun:
    """Every usable model on every suite (and the judge, if asked); a user's mistake or a server that
    refuses fails the run with its reason, a server down past the retries may be retried (outputs are cached)."""
    try:
        ngram = ngram_size()
        evaluator, items, dropped, adapter_names = open_evaluator(context, config, student, usable, warehouse)
        models = models_under_test(usable, adapter_names)
        suites = ", ".join(f"{suite} ({len(v)})" for suite, v in items.items())
        context.log.info(f"evaluating {[m.label for m in models]} on {suites}")
        judging = attach_judge(context, evaluator, judge, teacher, student) if config.judge else None
        choose, identity = (judging.choose_many, judging.cache_identity()) if judging is not None else (None, None)
        scores = evaluate(evaluator, models, items, choose=choose, judge_identity=identity)
    except (EvalDataError, ModelReferenceError, ServedModelError, DecontaminationError) as error:
        raise dg.Failure(str(error), allow_retries=False) from None
    except CallFailed as error:  # the server is down or overloaded past the retries: finished outputs are cached
        raise dg.Failure(f"student server: {error}", allow_retries=not error.refused) from None
    return EvaluationRun(evaluator, models, items, dropped, adapter_names, scores, ngram)


def attach_judge(
    context: dg.AssetExecutionContext, evaluator: Evaluator, judge: JudgeModel, teacher: Teacher, student: StudentModel
) -> Any:
    """The model that judges (the judge resource's, else the teacher), named on the evaluator and in the log."""
    judging = judge.resolve(teacher)
    if judging is not None:
        student_name = f"{student.served_model} at {student.base_url}" if student.is_served else student.model
        evaluator.judge_name = judge_description(judging, teacher, student_name)
        context.log.info(f"judge: {evaluator.judge_name}")
    return judging


def adapters_to_evaluate(
    context: dg.AssetExecutionContext, lora_checkpoint: pd.DataFrame, student: StudentModel, warehouse: Warehouse
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The checkpoints with an adapter of this student (a published one fetched to this node's scratch), and
    {model: reason} for those left out."""
    try:
        usable, skipped = usable_checkpoints(fetched_adapters(lora_checkpoint, warehouse))
    except CheckpointTableError as error:
        raise dg.Failure(str(error), allow_retries=False) from None
    for arm, reason in skipped.items():
        context.log.warning(f"arm {arm} not evaluated: {reason}")
    foreign = sorted(set(usable["base_model"].astype(str)) - {student.model})
    if foreign:
        raise dg.Failure(
            f"adapters were trained on {foreign}, but the student resource is {student.model!r}", allow_retries=False
        )
    return usable, skipped


def fetched_adapters(lora_checkpoint: pd.DataFrame, warehouse: Warehouse) -> pd.DataFrame:
    """The table with each trained adapter's path on this node (published adapters are fetched once)."""
    if not {"status", "adapter_path"} <= set(lora_checkpoint.columns):
        return lora_checkpoint  # usable_checkpoints names what is missing
    trained = lora_checkpoint["status"].astype(str) != SKIPPED
    paths = lora_checkpoint["adapter_path"].astype(str)
    return lora_checkpoint.assign(adapter_path=[
        warehouse.local_adapter(path) if keep else path for path, keep in zip(paths, trained, strict=True)
    ])


def open_evaluator(
    context: dg.AssetExecutionContext,
    config: EvalConfig,
    student: StudentModel,
    usable: pd.DataFrame,
    warehouse: Warehouse,
) -> tuple[Evaluator, dict[str, list[EvalItem]], list[str], dict[str, str]]:
    """The student (in process with every adapter attached, or its vLLM server with each adapter served)
    ready on the config's suites; returns the evaluator, the items, the items dropped and the served names."""
    if student.is_served:  # the server holds the weights: only the tokenizer is loaded here
        model = fingerprint = None
        tokenizer = load_tokenizer(student.model, trust_remote_code=student.trust_remote_code)
    else:
        model, tokenizer, fingerprint = load_model_and_tokenizer(
            student.model, dtype=student.dtype, device=student.device, generation=True
        )
    settings = config.settings(student.scoring_config().template or default_template(tokenizer))
    dropped: list[str] = []
    items = build_items(settings, dropped)
    for reason in dropped:
        context.log.warning(reason)
    cache = EvalOutputCache(warehouse.store)
    adapter_names: dict[str, str] = {}
    if student.is_served:
        server = student.served()
        assert server is not None
        context.log.info(server.check_tokenizer(tokenizer))
        backend = ServedEvalBackend(server, tokenizer, local_dir(student.model)[0])
        adapter_names = served_adapters(server, usable)
        evaluator = Evaluator(None, tokenizer, None, settings, cache, log=context.log.info, backend=backend)
        context.log.info(f"served adapters: {adapter_names}")
    else:
        evaluator = Evaluator(
            attach_adapters(model, usable), tokenizer, fingerprint, settings, cache, log=context.log.info
        )
    context.log.info(f"student: {evaluator.backend.describe()}")
    return evaluator, items, dropped, adapter_names


class ReportConfig(dg.Config):
    """What the report tests: one primary endpoint (stated first), the rest secondary and Holm-adjusted."""

    # Defaults and meaning: ReportSettings' (the same names).
    primary_suite: str = mirrored(ReportSettings, "primary_suite")
    primary_metric: str = mirrored(ReportSettings, "primary_metric")
    primary_reference: str = mirrored(ReportSettings, "primary_reference")
    alpha: float = mirrored(ReportSettings, "alpha")
    min_paired_n: int = mirrored(ReportSettings, "min_paired_n")
    resamples: int = mirrored(ReportSettings, "resamples")
    judge_flip_threshold: float = mirrored(ReportSettings, "judge_flip_threshold")
    seed: int = mirrored(ReportSettings, "seed")

    def settings(self) -> ReportSettings:
        return ReportSettings(**self.model_dump())  # the same names: the config is the report's knobs


@dg.asset(
    ins={"lora_checkpoint": ALL},
    group_name="evaluation",
    kinds={"duckdb", "python"},
    check_specs=[
        dg.AssetCheckSpec(
            METHOD_CHECK,
            asset="ablation_report",
            description="On the primary endpoint, `selective` is not significantly worse than its reference.",
        ),
        dg.AssetCheckSpec(
            CONTROL_CHECK,
            asset="ablation_report",
            description="`full` (every row) is better than the base on the primary endpoint: the evaluation can "
            "detect fine-tuning at all.",
        ),
    ],
    description="One row per (model, suite, metric, reference): paired n, seeds, values, delta [95% CI] and p over "
    "training runs and items (Holm-adjusted for secondaries), verdict, detectable effect, seeds needed; the "
    "primary endpoint and the control first.",
)
def ablation_report(
    context: dg.AssetExecutionContext,
    config: ReportConfig,
    eval_scores: pd.DataFrame,
    lora_checkpoint: pd.DataFrame,
    mlflow: MlflowTracking,
):  # no return annotation: with check_specs the op has several outputs
    report = ablation(eval_scores, lora_checkpoint, config.settings())
    png = intervals_png(report.table)
    context.log.info(f"ablation report\n{report.markdown}")
    return stage_result(
        context, mlflow, "ablation_report", report.table,
        numbers={"resamples": config.resamples}, params=config.model_dump(), metadata=report_metadata(report, png),
        artifacts={
            "ablation_report.md": f"{report.markdown}\n",
            "ablation_intervals.png": png,
            "ablation_report.csv": report.table.to_csv(index=False),
        },
        check_results=report_checks(report),
    )


def report_metadata(report: Ablation, png: bytes) -> dict[str, Any]:
    """The report as the asset page shows it: the headline, the table, the intervals, the two verdicts."""
    return {
        "headline": dg.MetadataValue.md(report.headline_markdown),
        "table": dg.MetadataValue.md(report.markdown),
        "intervals": dg.MetadataValue.md(png_markdown(png, "selective - reference, 95% interval over runs and items")),
        "primary_verdict": dg.MetadataValue.text(report.primary_verdict),
        "seeds": dg.MetadataValue.text(report.seeds),
        "positive_control": dg.MetadataValue.text(report.control),
        "items_left_out_contaminated": dg.MetadataValue.int(report.items_left_out),
    }


def report_checks(report: Ablation) -> list[dg.AssetCheckResult]:
    """The method's findings and the positive control, as warnings (a verdict is a result, not a failure)."""
    return [
        dg.AssetCheckResult(
            check_name=METHOD_CHECK,
            passed=not report.warnings,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"findings": dg.MetadataValue.json(report.warnings)},
        ),
        dg.AssetCheckResult(
            check_name=CONTROL_CHECK,
            passed=not report.control_failed,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"control": dg.MetadataValue.text(report.control)},
        ),
    ]
