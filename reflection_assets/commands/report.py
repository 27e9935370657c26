"""The run report: what the method did, read back from the warehouse, as JSON and markdown.

Sections: time per stage, teacher outcomes, the four decision branches, arm sizes, training, and the
ablation table with its intervals. A table that was not materialized is reported as such, never
guessed: an empty selection, a skipped arm or a missing evaluation each read as a result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from reflection_assets.commands.console import StageLine, markdown_table

TEACHER_TABLES = ("instruction_reflections", "response_reflections")
DECISION_COLUMNS = ["instruction_choice", "response_choice", "rows", "passed_filter", "selected"]
TRAINING_COLUMNS = ["arm", "seed", "status", "rows_trained", "first_loss", "final_loss", "train_seconds",
                    "skipped_reason"]


def _table(conn: Any, name: str) -> pd.DataFrame | None:
    found = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0]
    return conn.execute(f'SELECT * FROM "{name}"').df() if found else None


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict]:
    present = [c for c in columns if c in frame.columns]
    rows = frame[present].to_dict("records")
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in rows]


def teacher_outcomes(frame: pd.DataFrame) -> dict:
    counts = {str(k): int(v) for k, v in frame["outcome"].value_counts().sort_index().items()}
    errors = frame.loc[frame["error"].astype(str) != "", "error"] if "error" in frame else pd.Series(dtype=str)
    reasons = {str(k): int(v) for k, v in errors.astype(str).str.split(":").str[0].value_counts().head(6).items()}
    return {"rows": int(len(frame)), "outcomes": counts, "top_reasons": reasons}


def build_report(conn: Any, stages: Sequence[StageLine], seconds: float, settings: dict | None = None) -> dict:
    """Everything the report says, as JSON-safe values."""
    from reflection_assets.selection.rules import decision_counts

    report: dict[str, Any] = {
        "total_seconds": round(seconds, 1),
        "settings": settings or {},
        "stages": [
            {"asset": s.asset, "partition": s.partition, "seconds": round(s.seconds, 1), "numbers": dict(s.numbers)}
            for s in stages
        ],
    }
    report["teacher"] = {
        name: teacher_outcomes(frame) for name in TEACHER_TABLES if (frame := _table(conn, name)) is not None
    }
    selection = _table(conn, "selected_dataset")
    if selection is not None and len(selection):
        report["decisions"] = decision_counts(selection).to_dict("records")
        report["rows_selected"] = int(selection["selected"].astype(bool).sum())
    arms = _table(conn, "arm_datasets")
    if arms is not None:
        # Rows per arm (every seed of an arm draws the same number of rows) and the seeds built.
        arms = arms if "seed" in arms else arms.assign(seed="0")
        sizes = arms.groupby(["arm", "seed"]).size().groupby("arm").max() if len(arms) else pd.Series(dtype=int)
        report["arms"] = {str(k): int(v) for k, v in sizes.items()}
    training = _table(conn, "lora_checkpoint")
    if training is not None:
        report["training"] = _records(training, TRAINING_COLUMNS)
    ablation = _table(conn, "ablation_report")
    if ablation is not None:
        from reflection_assets.evaluation.report import COMPARISON_COLUMNS

        report["ablation"] = _records(ablation, COMPARISON_COLUMNS)
    return report


def render_markdown(report: dict, title: str = "Selective Reflection-Tuning run") -> str:
    out = [f"# {title}", "", f"Total time: {report['total_seconds']:.0f} s", ""]
    if report.get("settings"):
        out += ["## Settings", "", "```json", json.dumps(report["settings"], indent=1, default=str), "```", ""]
    out += [
        "## Time per stage",
        "",
        markdown_table(report["stages"], ["asset", "partition", "seconds"], floatfmt=".1f"),
        "",
    ]
    out += ["## Teacher outcomes", ""]
    for stage, numbers in report.get("teacher", {}).items():
        outcomes = ", ".join(f"{k} {v}" for k, v in numbers["outcomes"].items())
        reasons = ", ".join(f"{k} {v}" for k, v in numbers["top_reasons"].items())
        out.append(f"- `{stage}`: {numbers['rows']} rows: {outcomes}" + (f" (why: {reasons})" if reasons else ""))
    out += ["", "## Decisions (instruction choice x answer choice)", ""]
    if "decisions" in report:
        out += [markdown_table(report["decisions"], DECISION_COLUMNS), ""]
    else:
        out += ["Not materialized.", ""]
    out += ["## Arms", ""]
    arms = report.get("arms")
    out += [", ".join(f"`{k}` {v}" for k, v in arms.items()) if arms else "No arm was built.", ""]
    out += ["## Training", ""]
    out += [markdown_table(report["training"], TRAINING_COLUMNS) if report.get("training") else "Not materialized.", ""]
    if report.get("scope"):
        out += ["## What this run is about", "", *[f"- {k}: {v}" for k, v in report["scope"].items()], ""]
    out += ["## Ablation", ""]
    out += ablation_lines(report.get("ablation"))
    return "\n".join(out)


def ablation_lines(rows: list[dict] | None) -> list[str]:
    """The ablation as a user reads it: the primary verdict first (or the failed control), the control,
    the judge, the method against each reference, the other arms against the base."""
    if not rows:
        return ["Not materialized (no arm was evaluated).", ""]
    from reflection_assets.evaluation.report import COMPARISON_COLUMNS, INTEGER_COLUMNS, NUMBER_COLUMNS, report_lines

    table = pd.DataFrame(rows)
    if "role" not in table or "run_df" not in table:  # a warehouse from before the report counted runs
        return ["The stored ablation table predates the report's test over training runs: materialize "
                "ablation_report again.", ""]
    table = table.reindex(columns=COMPARISON_COLUMNS)
    for column in INTEGER_COLUMNS:
        table[column] = pd.to_numeric(table[column], errors="coerce")
    for column in NUMBER_COLUMNS:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    table["n"] = table["n"].fillna(0).astype(int)
    return [*report_lines(table), ""]


def write_report(report: dict, folder: Path, title: str = "Selective Reflection-Tuning run") -> dict[str, Path]:
    """report.json and report.md in `folder` (created); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "report.json", "markdown": folder / "report.md"}
    paths["json"].write_text(json.dumps(report, indent=1, default=str) + "\n")
    paths["markdown"].write_text(render_markdown(report, title) + "\n")
    return paths
