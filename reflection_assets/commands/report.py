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
TRAINING_COLUMNS = ["arm", "status", "rows_trained", "first_loss", "final_loss", "train_seconds", "skipped_reason"]
ABLATION_COLUMNS = ["model", "suite", "metric", "n", "value", "delta_vs_base", "ci_low", "ci_high", "verdict_vs_base",
                    "delta_vs_random", "ci_low_vs_random", "ci_high_vs_random", "verdict_vs_random"]


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
        report["arms"] = {str(k): int(v) for k, v in arms.groupby("arm").size().items()} if len(arms) else {}
    training = _table(conn, "lora_checkpoint")
    if training is not None:
        report["training"] = _records(training, TRAINING_COLUMNS)
    ablation = _table(conn, "ablation_report")
    if ablation is not None:
        report["ablation"] = _records(ablation, ABLATION_COLUMNS)
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
    out += ["## Ablation (95 % paired bootstrap intervals)", ""]
    out += ablation_lines(report.get("ablation"))
    return "\n".join(out)


def ablation_lines(rows: list[dict] | None) -> list[str]:
    """The ablation table as a user reads it (value, interval and verdict vs base and vs random), with the
    positive control's note, or why there is none."""
    if not rows:
        return ["Not materialized (no arm was evaluated).", ""]
    from reflection_assets.evaluation.report import markdown_table as ablation_markdown
    from reflection_assets.evaluation.report import positive_control_note

    table = pd.DataFrame(rows)
    return [ablation_markdown(table), "", positive_control_note(table), ""]


def write_report(report: dict, folder: Path, title: str = "Selective Reflection-Tuning run") -> dict[str, Path]:
    """report.json and report.md in `folder` (created); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "report.json", "markdown": folder / "report.md"}
    paths["json"].write_text(json.dumps(report, indent=1, default=str) + "\n")
    paths["markdown"].write_text(render_markdown(report, title) + "\n")
    return paths
