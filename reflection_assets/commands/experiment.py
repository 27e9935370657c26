"""`reflection-tuning experiment`: the whole graph on real data, with a report a practitioner keeps.

The data comes from `--source` or `REFLECTION_DATA` (any format `validate` reads); `--rows N` takes
the first N accepted pairs into a sample file under `data/experiments/`, so the partition names
exactly what was run. The teacher is whatever the environment configures (`REFLECTION_TEACHER_*`),
else the in-process model. The report (markdown and JSON: time per stage, teacher outcomes,
decisions, arms, training losses, the ablation table with intervals) goes to
`data/reports/<partition>-<time>/` and to MLflow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from reflection_assets.selection.columns import ARMS

if TYPE_CHECKING:
    from reflection_assets.commands.driver import GraphRun

# CPU-sensible defaults: the baselines that isolate the student's choice, the length baseline, the
# positive control, 128-token sections, three training seeds per arm.
EXPERIMENT_ARMS = ("selective", "reflected_all", "ifd_topk", "random", "longest", "full")
EXPERIMENT_SEEDS = 3
EVAL_ROWS = 40  # held-out pairs from the same source (rows the sample did not take)
MLFLOW_EXPERIMENT = "reflection-tuning-experiments"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default=None, help="dataset file/folder/name (default: $REFLECTION_DATA)")
    parser.add_argument(
        "--rows", type=int, default=200, help="first N accepted pairs of the source (0: all; default 200)"
    )
    parser.add_argument(
        "--arms", default=",".join(EXPERIMENT_ARMS), help="arms to train and evaluate (every arm's rows are built)"
    )
    parser.add_argument(
        "--seeds", type=int, default=EXPERIMENT_SEEDS, help=f"training seeds per arm (default {EXPERIMENT_SEEDS})"
    )
    parser.add_argument(
        "--eval-rows",
        type=int,
        default=EVAL_ROWS,
        help=f"held-out pairs from the source, disjoint from the sample (default {EVAL_ROWS}; "
        "REFLECTION_EVAL_FILE overrides)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=128, help="teacher tokens per reflection section")
    parser.add_argument("--partition", default=None, help="partition key (default: from the source and --rows)")
    parser.add_argument(
        "--verbose", action="store_true", help="Dagster's events and the libraries' warnings on the terminal"
    )


class Sample(NamedTuple):
    path: str
    rows: int
    source_rows_read: int
    source_rejected: dict[str, int]  # the source's rejected rows per reason (they never reach the sample)
    heldout_path: str = ""  # held-out pairs of the same source, disjoint by content ("" when none are left)
    heldout_rows: int = 0


def sample_file(source: str, rows: int, folder: Path, eval_rows: int = 0) -> Sample:
    """The first `rows` accepted pairs of `source` as JSONL: Alpaca fields when no pair has a system
    prompt or earlier turns (so instruction/input stay apart and row ids stay the source's), chat
    messages otherwise (system and turns kept). The source's rejections are counted, not dropped.

    With `eval_rows`, the next accepted pairs whose instruction+input and answer appear nowhere in
    the sample (up to `eval_rows`) go to a held-out file beside it: the experiment evaluates on its
    own source, never on a row it trained on."""
    from reflection_assets.ingest import read_dataset

    result = read_dataset(source)
    pairs = result.accepted[:rows]
    heldout_path, heldout = "", []
    if eval_rows:
        seen = {(p.instruction.strip(), p.input.strip()) for p in pairs} | {p.output.strip() for p in pairs}
        for pair in result.accepted[rows:]:
            if len(heldout) == eval_rows:
                break
            prompt = (pair.instruction.strip(), pair.input.strip())
            if prompt in seen or pair.output.strip() in seen:
                continue
            seen |= {prompt, pair.output.strip()}
            heldout.append(pair)
    as_messages = any(p.system or p.history for p in pairs)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{Path(source.rstrip('/')).stem}-{len(pairs)}.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for pair in pairs:
            record = (
                _messages(pair)
                if as_messages
                else {"instruction": pair.instruction, "input": pair.input, "output": pair.output}
            )
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    if heldout:
        held = folder / f"{path.stem}-heldout-{len(heldout)}.jsonl"
        with held.open("w", encoding="utf-8") as out:
            for pair in heldout:
                record = {"instruction": pair.instruction, "input": pair.input, "output": pair.output}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        heldout_path = str(held)
    return Sample(str(path), len(pairs), result.rows_read, result.reason_counts(), heldout_path, len(heldout))


def _messages(pair) -> dict:
    messages = [{"role": "system", "content": pair.system}] if pair.system else []
    messages += [{"role": t.role, "content": t.content} for t in pair.history]
    user = pair.instruction + (f"\n\n{pair.input}" if pair.input else "")
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": pair.output}]
    return {"messages": messages}


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
    from reflection_assets.evaluation.suites import EVAL_FILE_ENV
    from reflection_assets.ingest import DatasetReadError
    from reflection_assets.paths import data_dir

    if not require_dagster_home():
        return 2
    source = args.source or os.environ.get(DATA_ENV)
    if not source:
        print(
            "no data: pass --source FILE or set REFLECTION_DATA (any format `reflection-tuning validate` reads)",
            file=sys.stderr,
        )
        return 2
    quiet_libraries(args.verbose)
    try:
        eval_rows = 0 if os.environ.get(EVAL_FILE_ENV) else args.eval_rows
        sample = sample_file(source, args.rows, data_dir() / "experiments", eval_rows) if args.rows else None
    except DatasetReadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    data = sample.path if sample else source
    key = register_dataset(data, args.partition)
    register_seeds(args.seeds)
    eval_file, eval_source = evaluation_source(sample, source)
    scope = {
        "dataset partitions selected, trained and evaluated on": key,
        "evaluation items": eval_source,
        "training seeds per arm": args.seeds,
    }
    settings = experiment_settings(args, source, sample, key, eval_file)
    print(opening_lines(source, sample, key, scope), flush=True)
    steps = graph_steps(
        key,
        ",".join(ARMS),
        args.arms,
        {"max_new_tokens": args.max_new_tokens},
        seeds=args.seeds,
        # The held-out split is what eval_scores scores and what the exports are decontaminated against.
        selection={"datasets": [key], "eval_file": str(eval_file)},
        arm={"eval_file": str(eval_file)},
        evaluation={"eval_file": eval_file},
        # The experiment selects over its own partition only; an earlier sample of the same source (another
        # --rows) holds the same rows, which the check across partitions would remove as near-duplicates.
        ingest={"near_duplicates_across_partitions": False},
    )
    result = run_steps(steps, verbose=args.verbose, echo=lambda s: print(s, flush=True))
    print(report_run(result, settings, scope, key))
    return 0 if result.ok else 1


def report_run(result: GraphRun, settings: dict, scope: dict, key: str) -> str:
    """Write the report (markdown, JSON, MLflow) from the warehouse the run left; its tables and where it went."""
    from reflection_assets.commands.demo import table_lines
    from reflection_assets.commands.report import build_report, write_report
    from reflection_assets.paths import data_dir
    from resources.warehouse import Warehouse

    with Warehouse.from_env().connection(read_only=True) as conn:
        report = build_report(conn, result.stages, result.seconds, settings)
    report["ok"], report["failed"] = result.ok, result.failed
    report["scope"] = scope
    folder = data_dir() / "reports" / f"{key}-{time.strftime('%Y%m%d-%H%M%S')}"
    paths = write_report(report, folder, title=f"Selective Reflection-Tuning experiment: {key}")
    link = log_to_mlflow(report, paths)
    done = f"\nDone in {result.seconds:.0f} s. Report: {paths['markdown']} (and report.json){link}"
    return "\n".join(table_lines(report)) + "\n" + done


def evaluation_source(sample: Sample | None, source: str) -> tuple[str, str]:
    """The file eval_scores reads and a sentence on where its items come from, for the report's scope."""
    from reflection_assets.evaluation.suites import EVAL_FILE_ENV, default_eval_file

    if sample and sample.heldout_path and not os.environ.get(EVAL_FILE_ENV):
        held = sample.heldout_path
        return held, f"{held}: {sample.heldout_rows} pairs of {source} the sample did not take, disjoint by content"
    eval_file = default_eval_file()  # the user's REFLECTION_EVAL_FILE when set (run() then draws no held-out split)
    if os.environ.get(EVAL_FILE_ENV):
        return eval_file, f"{eval_file} (REFLECTION_EVAL_FILE)"
    return eval_file, f"{eval_file}: NOT from this source (no rows left after the sample; set REFLECTION_EVAL_FILE)"


def experiment_settings(
    args: argparse.Namespace, source: str, sample: Sample | None, key: str, eval_file: str
) -> dict:
    """What the report and MLflow record of how the experiment was run."""
    from reflection_assets.defs.deployment import ENV_STUDENT

    settings = {
        "source": source,
        "sample": sample.path if sample else source,
        "rows": sample.rows if sample else None,
        "partition": key,
        "arms": args.arms,
        "seeds": args.seeds,
        "eval_file": eval_file,
        "max_new_tokens": args.max_new_tokens,
        "teacher": teacher_label(os.environ),
        "student": os.environ.get(ENV_STUDENT, "bundled"),
    }
    if sample:  # rows the source rejected never reach the sample: say how many and why
        settings["source_rows_read"], settings["source_rejected"] = sample.source_rows_read, sample.source_rejected
    return settings


def opening_lines(source: str, sample: Sample | None, key: str, scope: dict) -> str:
    """The console's first lines: what was taken from the source, and the experiment's scope."""
    taken = f"the first {sample.rows} accepted rows" if sample else "every row"
    rejected = f", {sum(sample.source_rejected.values())} rejected {sample.source_rejected}" if sample else ""
    read = f" ({sample.source_rows_read} read{rejected})" if sample else ""
    lines = [f"reflection-tuning experiment: {taken} of {source}{read} as partition '{key}'"]
    return "\n".join(lines + [f"  {k}: {v}" for k, v in scope.items()])


def teacher_label(env) -> str:  # noqa: ANN001 - a mapping of environment variables
    """Which teacher ran, for the report and MLflow: the server (credentials in its URL removed) or the local model."""
    from urllib.parse import urlsplit, urlunsplit

    from reflection_assets.defs.deployment import ENV_BASE_URL, ENV_MODEL

    url = (env.get(ENV_BASE_URL) or "").strip()
    if not url:
        return "in-process " + (env.get(ENV_MODEL) or "bundled")
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]  # user:password@host -> host
    return f"{urlunsplit(parts._replace(netloc=host))} ({env.get(ENV_MODEL, '')})"


def log_to_mlflow(report: dict, paths: dict[str, Path]) -> str:
    """The report files and headline numbers as one MLflow run; returns a ' MLflow run: ...' suffix."""
    import mlflow

    from reflection_assets.defs.deployment import build_resources

    mlflow.set_tracking_uri(build_resources()["mlflow"].resolved_uri())
    mlflow.set_experiment(MLFLOW_EXPERIMENT)
    with mlflow.start_run(run_name=report["settings"].get("partition", "experiment")) as run:
        mlflow.log_params({k: str(v)[:250] for k, v in report["settings"].items()})
        mlflow.log_metric("total_seconds", report["total_seconds"])
        if "rows_selected" in report:
            mlflow.log_metric("rows_selected", report["rows_selected"])
        for path in paths.values():
            mlflow.log_artifact(str(path))
    return f"; MLflow run: {run.info.run_id}"
