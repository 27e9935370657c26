"""`reflection-tuning demo`: the whole default graph on the embedded demo set, offline, on a CPU.

Prints one line per stage (time and counts), the decision table, the ablation table and where to
look next; Dagster's event stream stays in the instance (`make dev` shows it), `--verbose` brings
it and the libraries' warnings back to the terminal.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

from reflection_assets.selection.columns import ARMS

# Every arm's training set is built; the demo trains and evaluates the method, the two baselines
# that isolate it (the teacher's rewrites without the student's choice, and a random draw of the
# same size) and the positive control `full` (every row: the evaluation must see that it trained).
# The other arms skip training with that reason; `--train-arms` adds them.
DEMO_TRAIN_ARMS = ("selective", "reflected_all", "random", "full")
DEMO_SEEDS = 2  # replicate seeds per trained arm: the fewest that show the seed's spread


@dataclass(frozen=True)
class DemoSize:
    """How much work one `demo --size` does; every size runs every asset and every arm partition."""

    what: str  # one line for the console's top
    teacher_rows: int | None  # rows both teacher stages reflect (the rest are kept, "outside limit"); None: all
    max_new_tokens: int  # teacher tokens per reflection section
    critique_tokens: int | None  # bound on the guided teacher's critique before its first section; None: default
    training: dict  # lora_checkpoint knobs of the trained arms
    evaluation: dict | None  # eval_scores run config; None: its defaults
    train_arms: tuple[str, ...] = DEMO_TRAIN_ARMS
    seeds: int = DEMO_SEEDS


# The demo is a tour of the machinery, not a verdict: at 135M parameters and 68 rows no size is science,
# `make experiment` on real data (and a GPU) is where verdicts are earned. The tour still runs every asset,
# trains every demo arm with both seeds and scores the primary endpoint (held-out NLL, all 33 held-out pairs:
# likelihoods only, cheap); the generated suites and the judge run on a few items with short answers, and
# their rows say "too few items". `full` is today's content, for the same graph at its demo size.
SIZES: dict[str, DemoSize] = {
    "tour": DemoSize(
        what="the tour size: every asset and arm, small (about 6 minutes on 2 CPU cores)",
        teacher_rows=None,
        max_new_tokens=96,
        # A short critique: the 135M teacher's critique is what it spends most tokens on, and its sections
        # (the parsed rewrite) get the budget instead.
        critique_tokens=16,
        # The same step budget for every arm: `full` (all 68 rows) stops at the steps a small arm takes,
        # instead of 3 epochs over 68 rows. Four steps at 2e-4 left the positive control undetected (p 0.053);
        # 5e-4, within LoRA's usual range, gives the few steps a dose the held-out NLL sees.
        training={"batch_size": 2, "epochs": 3.0, "max_steps": 4, "learning_rate": 5e-4},
        evaluation={
            "items_per_suite": 4,
            "max_new_tokens": {"arithmetic": 16, "gsm8k": 24, "ifeval": 24, "judge": 24},
        },
    ),
    "full": DemoSize(
        what="the full demo size: 68 rows through the teacher, 3 epochs, every suite at its defaults",
        teacher_rows=None,
        max_new_tokens=192,
        critique_tokens=None,
        training={"batch_size": 2, "epochs": 3.0},
        evaluation=None,
    ),
}
DEFAULT_SIZE = "tour"



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source", default=None, help="dataset file/folder/name (default: $REFLECTION_DATA or the demo set)"
    )
    parser.add_argument("--partition", default=None, help="partition key (default: derived from the source, or 'demo')")
    parser.add_argument(
        "--size",
        choices=sorted(SIZES),
        default=DEFAULT_SIZE,
        help="tour: every asset and arm on small settings (about 6 min on 2 cores); full: 68 rows through the "
        "teacher, 3 epochs, every suite at its defaults (default: tour)",
    )
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms to build (default: all)")
    parser.add_argument(
        "--train-arms",
        default=None,
        help=f"arms whose LoRA adapter is trained and evaluated (default: {','.join(DEMO_TRAIN_ARMS)})",
    )
    parser.add_argument(
        "--seeds", type=int, default=None, help=f"training seeds per trained arm (default: {DEMO_SEEDS})"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=None,
        help="teacher tokens per reflection section (default: the size's, tour 96, full 192)",
    )
    parser.add_argument(
        "--limit", type=int, default=None,
        help="reflect only the first N rows (default: the size's, tour 24, full all)",
    )
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
    size = SIZES[args.size]
    train_arms = args.train_arms if args.train_arms is not None else ",".join(size.train_arms)
    seeds = args.seeds if args.seeds is not None else size.seeds
    key = register_dataset(args.source or os.environ.get(DATA_ENV), args.partition)
    register_seeds(seeds)
    print(f"reflection-tuning demo, {size.what}", flush=True)
    print(f"  dataset partition '{key}', training {train_arms} with {seeds} seed(s) each", flush=True)
    from reflection_assets.served.client import ServedModelError

    try:
        print(f"student: {student_backend(os.environ)}", flush=True)
    except ServedModelError as error:  # a served student named without its model, a bad number
        print(f"error: {error}", flush=True)
        return 2
    steps = graph_steps(
        key, args.arms, train_arms, teacher_stage(size, args.max_new_tokens, args.limit), seeds=seeds,
        training=size.training, evaluation=size.evaluation,
    )
    result = run_steps(steps, verbose=args.verbose, echo=lambda s: print(s, flush=True))
    print(closing(result.seconds, key))
    print(next_size_lines(args.size))
    if args.profile:
        print_profile(result)
    return 0 if result.ok else 1


def teacher_stage(size: DemoSize, max_new_tokens: int | None = None, limit: int | None = None) -> dict:
    """Both reflection stages' run config: the size's, with the command line's tokens and limit over it."""
    stage = {
        "max_new_tokens": max_new_tokens if max_new_tokens is not None else size.max_new_tokens,
        "limit": limit if limit is not None else size.teacher_rows,
    }
    if size.critique_tokens is not None:
        stage["critique_tokens"] = size.critique_tokens
    return stage


def next_size_lines(size: str) -> str:
    """Where to go from the size just run: the same graph bigger, then real data."""
    lines = ["", "Next:"]
    if size != "full":
        lines.append("  the same graph at its full demo size:        reflection-tuning demo --size full")
    lines.append("  your own data, every arm, a verdict:         REFLECTION_DATA=<file> make experiment  (a GPU helps)")
    return "\n".join(lines)


def student_backend(env) -> str:
    """Where the student's passes (scoring, evaluation) run, as the deployment's variables say."""
    from reflection_assets.defs.deployment import ENV_STUDENT
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
    from reflection_assets.defs.deployment import build_resources
    from resources.warehouse import Warehouse

    warehouse = Warehouse.from_env()
    lines = [f"\nDone in {seconds:.0f} s.", *teacher_note(dg.DagsterInstance.get(), key)]
    with warehouse.connection(read_only=True) as conn:
        lines += result_tables(conn)
    tracking = build_resources()["mlflow"]
    lines += [
        "",
        "Where to look:",
        "  web UI (assets, lineage, run logs, plots):  make dev     -> http://127.0.0.1:3000",
        f"  MLflow (runs, loss curves, reports):        make mlflow-ui -> {tracking.runs_url() or tracking.ui_url}",
        f"    (store: {tracking.resolved_uri()})",
        f"  warehouse (one table per asset):            {warehouse.describe()}",
        f"  exports (selected rows, arms):              {warehouse.exports_location()}",
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
