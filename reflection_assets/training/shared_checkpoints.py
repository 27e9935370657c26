"""Checkpoints on the object store (the shared deployment): trained in local scratch, published with `FINISHED`
last, fetched where a finished one exists, one training per checkpoint key at a time across nodes.

`train_lora` takes a `CheckpointMirror`: while it holds a key (`hold`, a lease every node honours), a finished
copy on the store is fetched into the local layout, so the local reuse rule applies; an adapter trained here is
`publish`ed before the lease is let go, so a node waiting on the same key finds it and trains nothing.
`adapter_path` is then the adapter's URI; `local_adapter` turns it back into a local folder (a cache) for
evaluation and serving.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from reflection_assets.object_files import download_folder, file_exists, is_remote, upload_file, upload_folder
from reflection_assets.training.checkpoints import CheckpointLayout

MARKER = "FINISHED"
TRACKING = "tracking.json"  # written by the caller after the marker, published again then

# A lease on one name across nodes (the Postgres store's advisory lock), given the name and a wait callback.
Lease = Callable[[str, Callable[[], None]], AbstractContextManager[None]]


@dataclass(frozen=True)
class CheckpointMirror:
    root: str  # e.g. s3://bucket/files/checkpoints
    options: Mapping[str, str] = field(repr=False)  # credentials: never shown
    lease: Lease | None = None

    def uri(self, layout: CheckpointLayout) -> str:
        """The run's folder on the store: `<root>/<name>/<key>`, as locally."""
        return f"{self.root.rstrip('/')}/{layout.folder.parent.name}/{layout.folder.name}"

    def adapter_uri(self, layout: CheckpointLayout) -> str:
        return f"{self.uri(layout)}/{layout.adapter_dir.name}"

    def finished(self, layout: CheckpointLayout) -> bool:
        return file_exists(f"{self.uri(layout)}/{MARKER}", self.options)

    @contextlib.contextmanager
    def hold(self, layout: CheckpointLayout, log: Callable[[str], None] = print) -> Iterator[None]:
        """The key's lease for the block; a finished copy on the store is fetched into `layout` first."""
        waited = []

        def on_wait() -> None:
            if not waited:
                log(f"{layout.folder.name}: another node is training this checkpoint key; waiting for it")
            waited.append(1)

        lease = self.lease(f"checkpoint:{layout.folder.name}", on_wait) if self.lease else contextlib.nullcontext()
        with lease:
            if not layout.is_finished() and self.finished(layout):
                download_folder(self.uri(layout), layout.folder, self.options)
                log(f"{layout.folder.name}: finished adapter fetched from {self.uri(layout)}")
            yield

    def publish(self, layout: CheckpointLayout) -> str:
        """Upload the finished run (FINISHED last); returns the adapter's URI."""
        upload_folder(layout.folder, self.uri(layout), self.options, last=(TRACKING, MARKER))
        return self.adapter_uri(layout)

    def published(self, layout: CheckpointLayout) -> str:
        """The adapter's URI, the finished run uploaded first unless the store already has it."""
        return self.adapter_uri(layout) if self.finished(layout) else self.publish(layout)

    def publish_tracking(self, layout: CheckpointLayout) -> None:
        """The MLflow run that logged the adapter (the caller writes it after the marker), for the other nodes."""
        if layout.tracking_file.is_file():
            upload_file(layout.tracking_file, f"{self.uri(layout)}/{TRACKING}", self.options)


def local_adapter(adapter_path: str, cache: Path, options: Mapping[str, str]) -> str:
    """A local folder holding the adapter at `adapter_path`: itself when local, else a copy in `cache` (fetched
    once: the URI ends in the content-addressed checkpoint key)."""
    if not adapter_path or not is_remote(adapter_path):
        return adapter_path
    folder = Path(cache) / hashlib.sha256(adapter_path.encode()).hexdigest()[:16] / "adapter"
    if not (folder / "adapter_config.json").is_file():
        download_folder(adapter_path, folder, options)
    return str(folder)
