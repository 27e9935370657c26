"""`reflection-tuning` command line: thin dispatcher over reflection_assets.commands.*.

Each subcommand lives in its own module with `add_arguments(parser)` and `run(args) -> int`,
imported lazily so that `reflection-tuning validate` never pays for torch or Dagster.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, str] = {
    "validate": "Check a dataset file: rows read, accepted, rejected with reasons.",
    "score": "Compute IFD / r-IFD of instruction pairs with the student model.",
    "estimate": "Estimate teacher calls and tokens for rows not yet cached.",
    "train": "LoRA fine-tune the student on a data file or an arm (no Dagster needed).",
    "demo": "Materialize the whole default asset graph on the embedded demo set.",
    "experiment": "Run the whole graph on real data and write a report (markdown, JSON, MLflow).",
    "lineage": "Follow one raw row through every stage to the adapters trained on it.",
    "recover-runs": "Mark STARTED runs whose local worker process was killed as failed.",
}


def _load(name: str):
    return importlib.import_module(f"reflection_assets.commands.{name.replace('-', '_')}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    from reflection_assets.environment import environment_help

    parser = argparse.ArgumentParser(
        prog="reflection-tuning",
        description=__doc__.splitlines()[0],
        epilog=environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen subcommand's module is imported (start-up time matters for `score`).
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, help_text in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _load(name).add_arguments(sp)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(_load(args.command).run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
