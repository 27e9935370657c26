"""Evaluation assets: every arm's adapter and the base on the same suites, then the ablation report.

`eval_scores` loads the base model once, attaches every trained adapter, and scores all models in
one shared pass (outputs cached by content); with a served student it loads only the tokenizer and
evaluates on the same vLLM server, each adapter under its served name. `ablation_report` turns the
per-item scores into paired bootstrap intervals and verdicts. The work is in
`reflection_assets.evaluation` (and `reflection_assets.served`).
"""

from typing import Literal

import dagster as dg
import pandas as pd

from reflection_assets.assets.common import ALL, markdown_preview, numeric_metadata
from resources.student import StudentModel
from resources.teacher import Teacher
from resources.tracking import MlflowTracking
from resources.warehouse import Warehouse

METHOD_CHECK = "selective_not_worse"


class EvalConfig(dg.Config):
    """What is evaluated and how; every value is recorded with the scores."""

    eval_file: str = ""  # held-out pairs (jsonl); "" = $REFLECTION_EVAL_FILE or the demo's eval set
    gsm8k_file: str = ""  # question/answer '#### N' rows; "" = the eval file's GSM8K-style rows
    items_per_suite: int = 15
    seed: int = 0
    max_new_tokens: int = 64
    response_style: Literal["plain", "reflection"] = "plain"
    judge: bool = True
    lm_eval: bool = True
    batch_tokens: int = 0  # tokens per generation batch (0: the engine's default)


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
    warehouse: Warehouse,
    mlflow: MlflowTracking,
) -> dg.MaterializeResult[pd.DataFrame]:
    from reflection_assets.evaluation.cache import EvalOutputCache
    from reflection_assets.evaluation.checkpoints import (
        CheckpointTableError,
        attach_adapters,
        models_under_test,
        usable_checkpoints,
    )
    from reflection_assets.evaluation.contamination import flag_contaminated
    from reflection_assets.evaluation.runner import EvalSettings, Evaluator, build_items, evaluate
    from reflection_assets.evaluation.suites import EvalDataError, default_eval_file
    from reflection_assets.http_retries import CallFailed
    from reflection_assets.model_store import ModelReferenceError, load_model_and_tokenizer, load_tokenizer, local_dir
    from reflection_assets.scoring.templates import default_template
    from reflection_assets.served.adapters import served_adapters
    from reflection_assets.served.client import ServedModelError
    from reflection_assets.served.evaluation import ServedEvalBackend

    try:
        usable, skipped = usable_checkpoints(lora_checkpoint)
    except CheckpointTableError as error:
        raise dg.Failure(str(error), allow_retries=False) from None
    for arm, reason in skipped.items():
        context.log.warning(f"arm {arm} not evaluated: {reason}")
    foreign = sorted(set(usable["base_model"].astype(str)) - {student.model})
    if foreign:
        raise dg.Failure(
            f"adapters were trained on {foreign}, but the student resource is {student.model!r}", allow_retries=False
        )
    eval_file = config.eval_file or default_eval_file()
    model = fingerprint = None
    try:
        if student.is_served:  # the server holds the weights: only the tokenizer is loaded here
            tokenizer = load_tokenizer(student.model, trust_remote_code=student.trust_remote_code)
        else:
            model, tokenizer, fingerprint = load_model_and_tokenizer(
                student.model, dtype=student.dtype, device=student.device
            )
        template = student.scoring_config().template or default_template(tokenizer)
        settings = EvalSettings(
            eval_file=eval_file,
            gsm8k_file=config.gsm8k_file or eval_file,
            items_per_suite=config.items_per_suite,
            seed=config.seed,
            max_new_tokens=config.max_new_tokens,
            template=template,
            response_style=config.response_style,
            batch_tokens=config.batch_tokens or None,
            lm_eval=config.lm_eval,
        )
        items = build_items(settings)
    except (EvalDataError, ModelReferenceError) as error:
        raise dg.Failure(str(error), allow_retries=False) from None
    cache = EvalOutputCache(warehouse.database)
    adapter_names: dict[str, str] = {}
    try:
        if student.is_served:
            server = student.served()
            assert server is not None
            context.log.info(server.check_tokenizer(tokenizer))
            backend = ServedEvalBackend(server, tokenizer, local_dir(student.model)[0])
            adapter_names = served_adapters(server, usable)
            evaluator = Evaluator(None, tokenizer, None, settings, cache, log=context.log.info, backend=backend)
        else:
            evaluator = Evaluator(
                attach_adapters(model, usable), tokenizer, fingerprint, settings, cache, log=context.log.info
            )
        models = models_under_test(usable, adapter_names)
        context.log.info(f"student: {evaluator.backend.describe()}")
        if adapter_names:
            context.log.info(f"served adapters: {adapter_names}")
        context.log.info(
            f"evaluating {[m.name for m in models]} on {', '.join(f'{s} ({len(v)})' for s, v in items.items())}"
        )
        choose = teacher.choose if config.judge else None
        scores = evaluate(
            evaluator, models, items, choose=choose, judge_identity=teacher.cache_identity() if config.judge else None
        )
    except ServedModelError as error:
        raise dg.Failure(str(error), allow_retries=False) from None
    except CallFailed as error:  # the server is down or overloaded past the retries: finished outputs are cached
        raise dg.Failure(f"student server: {error}", allow_retries=not error.refused) from None

    contaminated = flag_contaminated(scores, items, arm_datasets)
    if contaminated:
        context.log.warning(
            f"{len(contaminated)} eval items share a 13-gram with a training row; the report leaves them out"
        )

    numbers = {
        "rows": len(scores),
        "models": len(models),
        "arms_skipped": len(skipped),
        "items_contaminated": len(contaminated),
        **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in evaluator.stats.items()},
    }
    if evaluator.stats["generation_seconds"]:
        numbers["generation_tokens_per_s"] = round(
            evaluator.stats["new_tokens"] / evaluator.stats["generation_seconds"], 1
        )
    link = mlflow.log(
        context,
        "eval_scores",
        metrics={k: float(v) for k, v in numbers.items()},
        params={
            **settings.record(),
            "models": [m.name for m in models],
            "skipped": skipped,
            "student_backend": evaluator.backend.describe(),  # never the key: describe() leaves it out
            "served_adapters": adapter_names,
        },
    )
    return dg.MaterializeResult(
        value=scores,
        metadata={
            **numeric_metadata(numbers),
            "models_evaluated": dg.MetadataValue.json([m.name for m in models]),
            "arms_skipped": dg.MetadataValue.json(skipped),
            "contaminated_items": dg.MetadataValue.json(
                sorted(scores.loc[scores["contaminated"], "instruction"].str.slice(0, 80).unique().tolist())
            ),
            "settings": dg.MetadataValue.json(settings.record()),
            "student_backend": dg.MetadataValue.text(evaluator.backend.describe()),
            "served_adapters": dg.MetadataValue.json(adapter_names),
            "preview": markdown_preview(scores, ["model", "suite", "metric", "value", "output"]),
            **link,
        },
    )


class ReportConfig(dg.Config):
    resamples: int = 2000
    seed: int = 0


@dg.asset(
    group_name="evaluation",
    kinds={"duckdb", "python"},
    check_specs=[
        dg.AssetCheckSpec(
            METHOD_CHECK,
            asset="ablation_report",
            description="`selective` is not significantly worse than `random` or the base.",
        )
    ],
    description="Per arm, suite and metric: value, paired 95% bootstrap intervals vs the base and vs random, verdicts.",
)
def ablation_report(
    context: dg.AssetExecutionContext, config: ReportConfig, eval_scores: pd.DataFrame, mlflow: MlflowTracking
):  # no return annotation: with check_specs the op has several outputs
    from reflection_assets.evaluation.plot import intervals_png
    from reflection_assets.evaluation.report import (
        ablation_table,
        markdown_table,
        method_warnings,
        positive_control_note,
    )
    from reflection_assets.plots import png_markdown

    clean = eval_scores[~eval_scores["contaminated"].astype(bool)] if len(eval_scores) else eval_scores
    table = ablation_table(clean, resamples=config.resamples, seed=config.seed)
    markdown = markdown_table(table)
    control = positive_control_note(table)
    warnings = method_warnings(table)
    png = intervals_png(table)
    context.log.info(f"ablation report\n{markdown}\n{control}")
    link = mlflow.log(
        context,
        "ablation_report",
        params=config.model_dump(),
        artifacts={
            "ablation_report.md": f"{markdown}\n\n{control}\n",
            "ablation_intervals.png": png,
            "ablation_report.csv": table.to_csv(index=False),
        },
    )
    check = dg.AssetCheckResult(
        check_name=METHOD_CHECK,
        passed=not warnings,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"findings": dg.MetadataValue.json(warnings)},
    )
    return dg.MaterializeResult(
        value=table,
        metadata={
            "table": dg.MetadataValue.md(markdown),
            "intervals": dg.MetadataValue.md(png_markdown(png, "arm - base, 95% paired bootstrap interval")),
            "positive_control": dg.MetadataValue.text(control),
            "items_left_out_contaminated": dg.MetadataValue.int(
                int(eval_scores["item_id"][eval_scores["contaminated"].astype(bool)].nunique())
                if len(eval_scores)
                else 0
            ),
            **numeric_metadata({"rows": len(table), "resamples": config.resamples}),
            **link,
        },
        check_results=[check],
    )
