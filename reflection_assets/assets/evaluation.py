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
from pydantic import Field

from reflection_assets.assets.common import ALL, markdown_preview, numeric_metadata
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

    eval_file: str = ""  # held-out pairs (jsonl); "" = $REFLECTION_EVAL_FILE or the demo's eval set
    gsm8k_file: str = ""  # question/answer '#### N' rows; "" = the eval file's GSM8K-style rows
    items_per_suite: int = 15
    seed: int = 0
    max_new_tokens: dict[str, int] = Field(
        default={}, description="tokens per generated suite, over the defaults (arithmetic 160, gsm8k 256, ifeval 192, "
        "judge 192)"
    )
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
    judge: JudgeModel,
    warehouse: Warehouse,
    mlflow: MlflowTracking,
) -> dg.MaterializeResult[pd.DataFrame]:
    from reflection_assets.deployment import judge_description
    from reflection_assets.evaluation.cache import EvalOutputCache
    from reflection_assets.evaluation.checkpoints import (
        CheckpointTableError,
        attach_adapters,
        models_under_test,
        usable_checkpoints,
    )
    from reflection_assets.evaluation.contamination import flag_contaminated
    from reflection_assets.evaluation.runner import SUITE_MAX_NEW_TOKENS, EvalSettings, Evaluator, build_items, evaluate
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
                student.model, dtype=student.dtype, device=student.device, generation=True
            )
        template = student.scoring_config().template or default_template(tokenizer)
        settings = EvalSettings(
            eval_file=eval_file,
            gsm8k_file=config.gsm8k_file or eval_file,
            items_per_suite=config.items_per_suite,
            seed=config.seed,
            max_new_tokens={**SUITE_MAX_NEW_TOKENS, **config.max_new_tokens},
            template=template,
            response_style=config.response_style,
            batch_tokens=config.batch_tokens or None,
            lm_eval=config.lm_eval,
        )
        dropped: list[str] = []
        items = build_items(settings, dropped)
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
            f"evaluating {[m.label for m in models]} on {', '.join(f'{s} ({len(v)})' for s, v in items.items())}"
        )
        for reason in dropped:
            context.log.warning(reason)
        judging = judge.resolve(teacher)
        student_name = f"{student.served_model} at {student.base_url}" if student.is_served else student.model
        evaluator.judge_name = judge_description(judging, teacher, student_name) if config.judge else ""
        if config.judge:
            context.log.info(f"judge: {evaluator.judge_name}")
        scores = evaluate(
            evaluator,
            models,
            items,
            choose=judging.choose_many if config.judge else None,
            judge_identity=judging.cache_identity() if config.judge else None,
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

    generated = scores[scores["output"].astype(str) != ""] if len(scores) else scores
    generated = generated.drop_duplicates(["model", "seed", "suite", "item_id"]) if len(generated) else generated
    numbers = {
        "rows": len(scores),
        "items_dropped_duplicate": len(dropped),
        "truncation_rate": float(generated["truncated"].mean()) if len(generated) else 0.0,
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
            "models": [m.label for m in models],
            "skipped": skipped,
            "student_backend": evaluator.backend.describe(),  # never the key: describe() leaves it out
            "served_adapters": adapter_names,
        },
    )
    return dg.MaterializeResult(
        value=scores,
        metadata={
            **numeric_metadata(numbers),
            "models_evaluated": dg.MetadataValue.json([m.label for m in models]),
            "arms_skipped": dg.MetadataValue.json(skipped),
            "truncated_per_suite": dg.MetadataValue.json(
                {str(k): round(float(v), 3) for k, v in generated.groupby("suite")["truncated"].mean().items()}
                if len(generated)
                else {}
            ),
            "items_dropped": dg.MetadataValue.json(dropped),
            "suite_overlap": dg.MetadataValue.text(SUITE_OVERLAP),
            "judge": dg.MetadataValue.text(evaluator.judge_name or "not run"),
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
    """What the report tests: one primary endpoint (stated first), the rest secondary and Holm-adjusted."""

    primary_suite: str = Field(default="heldout_nll", description="the primary endpoint's suite (stated first)")
    primary_metric: str = Field(default="nll", description="the primary endpoint's metric")
    primary_reference: str = Field(
        default="reflected_all",
        description="the method is tested against this arm on the primary endpoint (the base when it is absent)",
    )
    alpha: float = Field(default=0.05, description="test level; secondaries are Holm-adjusted at it")
    min_paired_n: int = Field(default=10, description="below this many paired items the verdict is 'too few items'")
    resamples: int = Field(
        default=10000, description="sign-flip Monte Carlo draws (exact up to 16 non-zero differences)"
    )
    judge_flip_threshold: float = Field(
        default=0.5, description="above this share of order-flipped judge verdicts the judge suite is uninformative"
    )
    seed: int = Field(default=0, description="seed of the Monte Carlo draws and the bootstrap intervals")

    def settings(self):  # noqa: ANN201 - ReportSettings (imported lazily with pandas)
        from reflection_assets.evaluation.report import ReportSettings

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
    description="One row per (model, suite, metric, reference): paired n, values, delta [95% CI], sign-flip p "
    "(Holm-adjusted for secondaries), verdict, detectable effect; the primary endpoint and the control first.",
)
def ablation_report(
    context: dg.AssetExecutionContext,
    config: ReportConfig,
    eval_scores: pd.DataFrame,
    lora_checkpoint: pd.DataFrame,
    mlflow: MlflowTracking,
):  # no return annotation: with check_specs the op has several outputs
    from reflection_assets.evaluation.plot import intervals_png
    from reflection_assets.evaluation.report import (
        comparison_table,
        control_failed,
        method_warnings,
        positive_control_note,
        report_lines,
        training_facts,
    )
    from reflection_assets.plots import png_markdown

    clean = eval_scores[~eval_scores["contaminated"].astype(bool)] if len(eval_scores) else eval_scores
    judge = next((j for j in clean.get("judge", pd.Series(dtype=str)).astype(str) if j), "") if len(clean) else ""
    settings = config.settings()
    table = comparison_table(clean, settings, training_facts(lora_checkpoint), judge)
    lines = report_lines(table)
    markdown = "\n".join(lines)
    control = positive_control_note(table)
    warnings = method_warnings(table)
    png = intervals_png(table)
    context.log.info(f"ablation report\n{markdown}")
    link = mlflow.log(
        context,
        "ablation_report",
        params=config.model_dump(),
        artifacts={
            "ablation_report.md": f"{markdown}\n",
            "ablation_intervals.png": png,
            "ablation_report.csv": table.to_csv(index=False),
        },
    )
    checks = [
        dg.AssetCheckResult(
            check_name=METHOD_CHECK,
            passed=not warnings,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"findings": dg.MetadataValue.json(warnings)},
        ),
        dg.AssetCheckResult(
            check_name=CONTROL_CHECK,
            passed=not control_failed(table) and "not run" not in control,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"control": dg.MetadataValue.text(control)},
        ),
    ]
    primary = table[table["role"] == "primary"]
    return dg.MaterializeResult(
        value=table,
        metadata={
            "headline": dg.MetadataValue.md("\n\n".join(lines[: lines.index("")] if "" in lines else lines)),
            "table": dg.MetadataValue.md(markdown),
            "intervals": dg.MetadataValue.md(png_markdown(png, "selective - reference, 95% paired bootstrap interval")),
            "primary_verdict": dg.MetadataValue.text(primary.iloc[0]["verdict"] if len(primary) else "not tested"),
            "positive_control": dg.MetadataValue.text(control),
            "items_left_out_contaminated": dg.MetadataValue.int(
                int(eval_scores["item_id"][eval_scores["contaminated"].astype(bool)].nunique())
                if len(eval_scores)
                else 0
            ),
            **numeric_metadata({"rows": len(table), "resamples": config.resamples}),
            **link,
        },
        check_results=checks,
    )
