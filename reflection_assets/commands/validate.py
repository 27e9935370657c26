"""`reflection-tuning validate FILE`: check a dataset before it enters the graph.

Exit 0 when the source could be read, rejections or not (the summary shows them); exit 2 with
one line on stderr for a source that cannot be read or a bad option. Imports stay light
(no torch, transformers or dagster) so the command answers in about a second, most of it the
near-duplicate check's import of datasketch (which loads scipy); --no-near-duplicates skips both.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from reflection_assets.documented import help_text
from reflection_assets.ingest.columns import parse_column_map
from reflection_assets.ingest.detect import FORMATS
from reflection_assets.ingest.errors import DatasetReadError
from reflection_assets.ingest.near_duplicates import NearDuplicateSettings
from reflection_assets.ingest.validate import format_summary, validate_file

HELP = "check a dataset file: count the rows that would be accepted and why others would not"
EXIT_OK = 0
EXIT_UNREADABLE = 2  # argparse uses 2 for usage errors too: "you gave me something I cannot use"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a .json/.jsonl/.csv/.parquet file, a folder of them, or a hub dataset name")
    parser.add_argument("--format", default="auto", choices=FORMATS, help="row format (default: detect)")
    parser.add_argument(
        "--column-map",
        default=None,
        metavar="FIELD=COLUMN,...",
        help="which columns hold our fields, e.g. instruction=q,output=a (fields: instruction, input, output, system)",
    )
    parser.add_argument(
        "--report", default=None, type=Path, metavar="REPORT.json", help="also write the report as JSON"
    )
    default = NearDuplicateSettings()
    parser.add_argument(
        "--near-duplicate-threshold",
        type=float,
        default=default.threshold,
        metavar="JACCARD",
        help=f"{help_text(NearDuplicateSettings, 'threshold')} (default {default.threshold}; within the file only)",
    )
    parser.add_argument(
        "--no-near-duplicates", action="store_true", help="skip the near-duplicate check (exact duplicates still count)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        column_map = parse_column_map(args.column_map)
    except ValueError as err:
        return _fail(f"--column-map: {err}")
    try:
        near = NearDuplicateSettings(enabled=not args.no_near_duplicates, threshold=args.near_duplicate_threshold)
    except ValueError as err:
        return _fail(f"--near-duplicate-threshold: {err}")
    try:
        report = validate_file(args.file, args.format, column_map, near_duplicates=near)
    except DatasetReadError as err:
        return _fail(str(err))
    print(format_summary(report))
    if args.report is not None:
        try:
            args.report.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        except OSError as err:
            return _fail(f"{args.report}: cannot write the report: {err.strerror or err}")
    return EXIT_OK


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_UNREADABLE


def main(argv: list[str] | None = None) -> int:
    """Run this command alone (python -m reflection_assets.commands.validate); the project CLI
    dispatches to add_arguments/run instead."""
    parser = argparse.ArgumentParser(prog="reflection-tuning validate", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
