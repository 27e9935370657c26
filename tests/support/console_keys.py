"""Checks that a stage's console line reads metadata keys its asset really writes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from reflection_assets.commands.console import HEADLINES, NOTES


def keys_read(asset: str) -> set[str]:
    """The metadata keys the console's line for `asset` reads: its headline numbers and its note."""
    note = {NOTES[asset][0]} if asset in NOTES else set()
    return {key for key, _ in HEADLINES[asset]} | note


def assert_console_reads_written_keys(asset: str, metadata: Mapping[str, Any], absent: Iterable[str] = ()) -> None:
    """Every key the console reads for `asset` is in `metadata` (one real materialization's), except the
    keys in `absent`, which this kind of materialization must not write (a skip has no loss, a trained arm
    no skip reason): a renamed key fails here instead of vanishing from the demo's line."""
    absent = set(absent)
    assert absent <= keys_read(asset), f"{sorted(absent - keys_read(asset))} are not read for {asset}"
    missing = keys_read(asset) - absent - set(metadata)
    assert not missing, f"the console's {asset} line reads {sorted(missing)}, which the asset did not write"
    assert not absent & set(metadata), f"{asset} wrote {sorted(absent & set(metadata))}, expected absent here"
