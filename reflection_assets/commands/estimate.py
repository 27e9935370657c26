"""`reflection-tuning estimate --input PAIRS.jsonl`: what reflecting a dataset would cost.

Counts the teacher calls and tokens for the rows not already in the llm_calls cache, with the
teacher the environment configures (REFLECTION_TEACHER_*), before anything is spent. Completion
tokens are a worst case; prompt tokens are estimated from characters. Nothing is loaded or sent.
Near-duplicate rows are removed first, as the ingest removes them (within the file here), and the
calls that saves are reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from reflection_assets.documented import default_of, help_text
from reflection_assets.teacher.cache import DEFAULT_CACHE_PATH
from reflection_assets.teacher.settings import ReflectionSettings
from reflection_assets.teacher.types import INSTRUCTION, RESPONSE

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input", required=True, metavar="PAIRS.jsonl", help="dataset file or folder (any format `validate` reads)"
    )
    parser.add_argument(
        "--stage", choices=(INSTRUCTION, RESPONSE), default=INSTRUCTION, help="reflection stage (default: instruction)"
    )
    parser.add_argument(
        "--cache",
        default=DEFAULT_CACHE_PATH,
        metavar="DB",
        help=f"llm_calls DuckDB file (default: {DEFAULT_CACHE_PATH})",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=default_of(ReflectionSettings, "max_new_tokens"), metavar="N",
        help=f"{help_text(ReflectionSettings, 'max_new_tokens')} (default: %(default)s)"
    )
    parser.add_argument(
        "--guided", action="store_true", help="estimate guided generation (critique + one request per section)"
    )
    parser.add_argument(
        "--critique-tokens", type=int, default=default_of(ReflectionSettings, "critique_tokens"), metavar="N",
        help=f"{help_text(ReflectionSettings, 'critique_tokens')} (default: %(default)s)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="only the first N rows, as a trial run would"
    )
    parser.add_argument(
        "--max-calls", type=int, default=None, metavar="N", help="check the estimate against this call cap"
    )
    parser.add_argument(
        "--max-tokens", type=int, default=None, metavar="N", help="check the estimate against this token cap"
    )
    parser.add_argument(
        "--no-near-duplicates",
        action="store_true",
        help="keep near-duplicate rows (by default they are removed first, as the ingest does, within the file)",
    )
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")


def run(args: argparse.Namespace) -> int:
    from reflection_assets.defs.deployment import build_teacher
    from reflection_assets.ingest.errors import DatasetReadError
    from reflection_assets.ingest.near_duplicates import NearDuplicateIndex
    from reflection_assets.ingest.readers import read_dataset
    from reflection_assets.ingest.reasons import NEAR_DUPLICATE
    from reflection_assets.teacher.backend import TeacherError
    from reflection_assets.teacher.cache import CallCache
    from reflection_assets.teacher.estimate import estimate_cost
    from reflection_assets.teacher.settings import ReflectionSettings

    try:
        settings = ReflectionSettings(
            max_new_tokens=args.max_new_tokens,
            guided=args.guided,
            critique_tokens=args.critique_tokens,
            limit=args.limit,
            max_calls=args.max_calls,
            max_tokens=args.max_tokens,
        )
        near_duplicates = None if args.no_near_duplicates else NearDuplicateIndex()
        result = read_dataset(args.input, near_duplicates=near_duplicates)
        identity = build_teacher().cache_identity()
    except (ValueError, DatasetReadError, TeacherError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    cache = CallCache(args.cache) if Path(args.cache).is_file() else None
    removed = result.reason_counts().get(NEAR_DUPLICATE, 0)
    estimate = estimate_cost(result.accepted, args.stage, identity, cache, settings, near_duplicates_removed=removed)
    print(json.dumps(estimate, indent=2) if args.json else format_estimate(estimate))
    return EXIT_OK


def format_estimate(e: dict) -> str:
    lines = [
        f"teacher: {e['backend']} {e['model']} (prompts {e['prompt_version']}, stage {e['stage']}"
        f"{', guided' if e['guided'] else ''})",
        f"rows: {e['rows']} ({e['rows_cached']} cached, {e['rows_duplicate']} duplicates, "
        f"{e['rows_past_limit']} past the limit)",
        f"calls: {e['calls']} ({e['requests']} requests)",
        f"near-duplicates removed before the teacher: {e['rows_near_duplicate']} rows, "
        f"{e['calls_saved_by_near_duplicates']} calls saved over both stages",
        f"tokens: ~{e['prompt_tokens']} prompt + at most {e['max_completion_tokens']} completion "
        f"= at most {e['max_total_tokens']}",
    ]
    if e["max_calls_cap"] is not None or e["max_tokens_cap"] is not None:
        verdict = "within" if e["within_caps"] else "BEYOND"
        lines.append(f"caps: calls {e['max_calls_cap']}, tokens {e['max_tokens_cap']}: {verdict} the caps")
    return "\n".join(lines)
