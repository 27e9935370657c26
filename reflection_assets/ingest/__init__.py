"""Ingest: read instruction datasets (Alpaca, ShareGPT, chat messages, CSV, Parquet, hub) into
Pairs, keeping every rejected row with its reason. Pure Python, no Dagster."""

from reflection_assets.ingest.errors import DatasetReadError
from reflection_assets.ingest.readers import Provenance, ReadResult, RejectedRow, read_dataset
from reflection_assets.ingest.reasons import REASONS
from reflection_assets.ingest.validate import format_summary, validate_file

__all__ = [
    "REASONS",
    "DatasetReadError",
    "Provenance",
    "ReadResult",
    "RejectedRow",
    "format_summary",
    "read_dataset",
    "validate_file",
]
