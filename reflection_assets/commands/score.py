"""`reflection-tuning score`: IFD and r-IFD of every pair in a JSONL file, with the student model.

Start-up matters, so only argparse/json are imported at module level and `run` imports the
scoring stack (torch, transformers, duckdb) -- never Dagster, MLflow or datasets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from reflection_assets.dataclass_args import add_dataclass_arguments, dataclass_from_args
from reflection_assets.scoring.settings import ScoringConfig  # light: no torch, no tokenizer


class InputError(ValueError):
    """A bad input row or file, reported as one line naming the file and line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        required=True,
        type=Path,
        metavar="PAIRS.jsonl",
        help="rows with instruction, optional input, output, optional id",
    )
    parser.add_argument(
        "--output", required=True, type=Path, metavar="SCORES.jsonl", help="one score row per input row"
    )
    parser.add_argument(
        "--student",
        default="bundled",
        metavar="REF",
        help="bundled (default), a .gguf file, a model directory or a hub id",
    )
    scoring = parser.add_argument_group("scoring (defaults as in the student resource)")
    add_dataclass_arguments(scoring, ScoringConfig)  # every field a flag, typed and explained by the field
    parser.add_argument(
        "--cache", type=Path, default=None, metavar="DB", help="DuckDB file whose student_scores table caches losses"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    parser.add_argument(
        "--dtype", default=None, help="float32, bfloat16 ... (default: float32 on CPU, bfloat16 on CUDA)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def _optional_text(row: dict, name: str, where: str) -> str:
    value = row.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{where}: field {name!r} must be a string")
    return value


def _history(row: dict, where: str) -> tuple:
    from reflection_assets.schema import Turn

    turns = row.get("history") or []
    if not isinstance(turns, list) or not all(
        isinstance(t, dict) and isinstance(t.get("role"), str) and isinstance(t.get("content"), str) for t in turns
    ):
        raise InputError(f"{where}: field 'history' must be a list of {{role, content}} objects")
    return tuple(Turn(t["role"], t["content"]) for t in turns)


def parse_row(text: str, where: str) -> Any:
    """One JSONL line to a Pair; `where` is 'file:line' for the error message."""
    from reflection_assets.schema import Pair

    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for name in ("instruction", "output"):
        if name not in row:
            raise InputError(f"{where}: missing field {name!r}")
        if not isinstance(row[name], str):
            raise InputError(f"{where}: field {name!r} must be a string")
    row_id = row.get("id")
    if row_id is not None and not isinstance(row_id, (str, int)):
        raise InputError(f"{where}: field 'id' must be a string or an integer")
    pair = Pair(
        instruction=row["instruction"],
        output=row["output"],
        input=_optional_text(row, "input", where),
        system=_optional_text(row, "system", where),
        history=_history(row, where),
    )
    return dataclasses.replace(pair, row_id=str(row_id) if row_id is not None else pair.content_id())


def read_pairs(path: Path) -> list:
    """All rows of a JSONL file (blank lines skipped); the first bad row raises InputError."""
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    pairs = []
    with handle:
        line_no = 0
        try:
            for line_no, line in enumerate(handle, start=1):
                if line.strip():
                    pairs.append(parse_row(line, f"{path}:{line_no}"))
        except UnicodeDecodeError:
            raise InputError(f"{path}:{line_no + 1}: not valid UTF-8") from None
    return pairs


def write_rows(path: Path, rows: list[dict]) -> None:
    """Write JSONL atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with staging.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(staging, path)


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        pairs = read_pairs(args.input)
    except InputError as exc:
        _err(f"error: {exc}")
        return 2
    if args.max_length < 2 or (args.batch_tokens is not None and args.batch_tokens < 1):
        _err("error: --max-length must be at least 2 and --batch-tokens positive")
        return 2

    from transformers.utils import logging as hf_logging

    from reflection_assets.http_retries import CallFailed
    from reflection_assets.model_store import ModelReferenceError
    from reflection_assets.progress import Progress
    from reflection_assets.scoring.cache import StudentScoreCache
    from reflection_assets.scoring.scorer import score_pairs, settings_for
    from reflection_assets.scoring.student import load_student
    from reflection_assets.served.client import ServedModelError, ServedStudent
    from reflection_assets.served.scoring import served_student

    hf_logging.disable_progress_bar()  # our own progress lines say more (rate, ETA)
    try:
        served = ServedStudent.from_env(os.environ)  # REFLECTION_STUDENT_BASE_URL: score on a vLLM server
        student = (
            served_student(args.student, served)
            if served is not None
            else load_student(args.student, device=args.device, dtype=args.dtype)
        )
        config = dataclass_from_args(ScoringConfig, args)
        settings = settings_for(student, config)  # validates template / start token early
    except (ModelReferenceError, ServedModelError, ValueError, OSError) as exc:
        _err(f"error: {exc}")
        return 2
    if not args.quiet:
        _err(f"student: {student.describe()}")
    cache = StudentScoreCache(args.cache) if args.cache else None
    progress = None if args.quiet else Progress(_err, "scored", unit="tokens", every_s=10.0)
    try:
        scores = score_pairs(pairs, student, config, cache=cache, progress=progress)
    except (ServedModelError, CallFailed) as exc:
        _err(f"error: {exc}")
        return 1
    write_rows(args.output, [score.to_dict() for score in scores])

    counts = Counter(s.ifd_status for s in scores)
    rcounts = Counter(s.rifd_status for s in scores)
    summary = lambda c: ", ".join(f"{k} {v}" for k, v in sorted(c.items()))  # noqa: E731
    _err(
        f"scored {len(scores)} rows with {student.fingerprint} [{student.describe()}] "
        f"({settings.template}, start {settings.start_token}, "
        f"max_length {settings.max_length}) in {time.monotonic() - started:.1f}s; "
        f"ifd: {summary(counts)}; rifd: {summary(rcounts)} -> {args.output}"
    )
    return 0
