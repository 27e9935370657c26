"""The one exception for a source that cannot be read as a dataset at all."""

from __future__ import annotations

from pathlib import Path


class DatasetReadError(Exception):
    """A whole-file failure (missing, truncated, not a dataset, wrong columns, unknown format).

    Row-level problems never raise: they become rejected rows. This error means nothing from the
    source can be trusted, so its message is one line naming the file and the place it broke,
    fit to print to a user as is.
    """

    def __init__(self, path: str | Path, location: str, message: str) -> None:
        self.path = str(path)
        self.location = location
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [self.path.replace("\n", " ").replace("\r", " "), _one_line(self.location), _one_line(self.message)]
        return ": ".join(p for p in parts if p)


def _one_line(text: str) -> str:
    """Library messages can span lines; the CLI promises one."""
    return " ".join(str(text).split())
