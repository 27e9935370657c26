"""`reflection-tuning demo`: the whole default graph on the embedded demo set, offline, on a CPU.

Prints one line per stage (time and counts), the decision table, the ablation table and where to
look next; Dagster's event stream stays in the instance (`make dev` shows it), `--verbose` brings
it and the libraries' warnings back to the terminal.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from reflection_assets.selection.columns import ARMS

# Every arm's training set is built; the demo trains and evaluates the method, the two baselines
# that isolate it (the teacher's rewrites without the student's choice, and a random draw of the
# same size) and the positive control `full` (every row: the evaluation must see that it trained).
# The other arms skip training with that reason; `--train-arms` adds them.
DEMO_TRAIN_ARMS = ("selective", "reflected_all", "random", "full")
DEMO_SEEDS = 2  # replicate seeds per trained arm: the fewest that show the seed's spread



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source", default=None, help="dataset file/folder/name (default: $REFLECTION_DATA or the demo set)"
    )
    parser.add_argument("--partition", default=None, help="partition key (default: derived from the source, or 'demo')")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms to build (default: all)")
    parser.add_argument(
        "--train-arms",
        default=",".join(DEMO_TRAIN_ARMS),
        help=f"arms whose LoRA adapter is trained and evaluated (default: {','.join(DEMO_TRAIN_ARMS)})",
    )
    parser.add_argument(
        "--seeds", type=int, default=DEMO_SEEDS, help=f"training seeds per trained arm (default: {DEMO_SEEDS})"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=192, help="teacher tokens per reflection section (default: 192)"
    )
    parser.add_argument("--limit", type=int, default=None, help="reflect only the first N rows (trial runs)")
    parser.add_argument(
        "--verbose", action="store_true", help="Dagster's events and the libraries' warnings on the terminal"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the run, where the time went: each step's model loads and work, start-up, run overhead",
    )


def run(args: argparse.Namespace) -> int:
    from reflection_assets.commands.console import quiet_libraries
    from reflection_assets.commands.driver import (
        graph_steps,
        register_dataset,
        register_seeds,
        require_dagster_home,
        run_steps,
    )
    from reflection_assets.demo_data import DATA_ENV

    if not require_dagster_home():
        return 2
    quiet_libraries(args.verbose)
    key = register_dataset(args.source or os.environ.get(DATA_ENV), args.partition)
    register_seeds(args.seeds)
    print(
        f"reflection-tuning demo: dataset partition '{key}', training {args.train_arms} with {args.seeds} seed(s) each",
        flush=True,
    )
    from reflection_assets.served.client import ServedModelError

    try:
        print(f"student: {student_backend(os.environ)}", flush=True)
    except ServedModelError as error:  # a served student named without its model, a bad number
        print(f"error: {error}", flush=True)
        return 2
    teacher_stage = {"max_new_tokens": args.max_new_tokens, "limit": args.limit}
    steps = graph_steps(key, args.arms, args.train_arms, teacher_stage, seeds=args.seeds)
    result = run_steps(steps, verbose=args.verbose, echo=lambda s: print(s, flush=True))
    print(closing(result.seconds, key))
    if args.profile:
        print_profile(result)
    return 0 if result.ok else 1


def student_backend(env) -> str:
    """Where the student's passes (scoring, evaluation) run, as the deployment's variables say."""
    from reflection_assets.deployment import ENV_STUDENT
    from reflection_assets.served.client import ServedStudent

    weights = (env.get(ENV_STUDENT) or "").strip() or "bundled"
    served = ServedStudent.from_env(env)
    if served is None:
        return f"in-process ({weights})"
    at_once = served.logprob_concurrency
    return f"vLLM: {served.describe()} (tokenizer: {weights}; prompt log-probabilities {at_once} at a time)"


def closing(seconds: float, key: str) -> str:
    """The results as small tables (the teacher per mode, decisions, training, ablation), then where to look."""
    import dagster as dg

    from reflection_assets.commands.teacher_note import teacher_note
    from reflection_assets.database import connect
    from reflection_assets.deployment import build_resources
    from reflection_assets.paths import exports_dir, warehouse_path

    lines = [f"\nDone in {seconds:.0f} s.", *teacher_note(dg.DagsterInstance.get(), key)]
    with connect(str(warehouse_path()), read_only=True) as conn:
        lines += result_tables(conn)
    tracking = build_resources()["mlflow"]
    lines += [
        "",
        "Where to look:",
        "  web UI (assets, lineage, run logs, plots):  make dev     -> http://127.0.0.1:3000",
        f"  MLflow (runs, loss curves, reports):        make mlflow-ui -> {tracking.runs_url() or tracking.ui_url}",
        f"    (store: {tracking.resolved_uri()})",
        f"  warehouse (one table per asset):            {warehouse_path()}",
        f"  exports (selected rows, arms):              {exports_dir()}",
    ]
    return "\n".join(lines)


def result_tables(conn) -> list[str]:
    from reflection_assets.commands.report import build_report

    report = build_report(conn, [], 0.0)
    return table_lines(report)


def table_lines(report: dict) -> list[str]:
    from reflection_assets.commands.console import markdown_table
    from reflection_assets.commands.report import DECISION_COLUMNS, TRAINING_COLUMNS, ablation_lines

    lines: list[str] = []
    if "decisions" in report:
        lines += [
            "",
            f"Decisions ({report['rows_selected']} rows selected):",
            markdown_table(report["decisions"], DECISION_COLUMNS),
        ]
    else:
        lines += ["", "No selection was made (see the selection step above)."]
    if report.get("training"):
        lines += [
            "",
            "Training:",
            markdown_table(report["training"], TRAINING_COLUMNS),
        ]
    lines += ["", "Ablation:", *ablation_lines(report.get("ablation"))]
    return lines


def print_profile(result: Any) -> None:
    import dagster as dg

    from reflection_assets.commands.profile import process_started, profile_lines, run_profile
    from reflection_assets.model_store import LOADS

    profile = run_profile(dg.DagsterInstance.get(), list(zip(result.labels, result.run_ids)), LOADS, process_started())
    print("\n".join(profile_lines(profile)), flush=True)
