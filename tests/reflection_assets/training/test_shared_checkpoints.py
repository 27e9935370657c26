"""Checkpoints on the object store (the shared deployment), on loopback S3 and Postgres: published with FINISHED
last, fetched by a node that has none instead of trained again, one training per key at a time across nodes, and
an adapter URI turned into a local folder once (tests/support/shared_stores.py starts the servers)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from reflection_assets import object_files
from reflection_assets.object_tables import storage_options
from reflection_assets.postgres import advisory_lock
from reflection_assets.training.checkpoints import CheckpointLayout
from reflection_assets.training.shared_checkpoints import CheckpointMirror, local_adapter

pytestmark = pytest.mark.slow  # Postgres and the object store (one session-wide set)


@pytest.fixture
def mirror(shared_stores, monkeypatch) -> CheckpointMirror:
    for name, value in shared_stores.node_env().items():
        monkeypatch.setenv(name, value)
    store = shared_stores.fresh_store()
    return CheckpointMirror(f"s3://reflection/checkpoints-{uuid.uuid4().hex[:8]}", storage_options(),
                            lambda name, on_wait: advisory_lock(store, name, on_wait, poll_s=0.1))


def train_here(layout: CheckpointLayout) -> None:
    """What a finished training run leaves in its folder (the files the reuse rule looks for)."""
    layout.adapter_dir.mkdir(parents=True)
    (layout.adapter_dir / "adapter_config.json").write_text('{"r": 8}')
    (layout.adapter_dir / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    layout.write_result({"status": "trained"})
    layout.mark_finished()


def reuse_or_train(mirror: CheckpointMirror, layout: CheckpointLayout, log, seconds: float = 0.0) -> str:
    """train_lora's use of the mirror: decide under the key's lease, publish before letting go."""
    with mirror.hold(layout, log):
        if layout.is_finished():
            return "reused"
        train_here(layout)
        time.sleep(seconds)
        mirror.publish(layout)
        return "trained"


def test_the_marker_is_published_last_and_a_node_without_the_adapter_fetches_it(mirror, tmp_path, monkeypatch):
    uploaded: list[str] = []
    upload = object_files.upload_file
    monkeypatch.setattr(object_files, "upload_file", lambda local, uri, options: (uploaded.append(uri),
                                                                                   upload(local, uri, options)))
    first = CheckpointLayout.under(tmp_path / "node-a", "selective", "k1")
    assert reuse_or_train(mirror, first, print) == "trained"
    assert uploaded[-1].endswith("/selective/k1/FINISHED") and len(uploaded) == 4

    second = CheckpointLayout.under(tmp_path / "node-b", "selective", "k1")
    logged: list[str] = []
    assert reuse_or_train(mirror, second, logged.append) == "reused"
    assert second.is_finished() and "fetched from" in logged[0]
    assert (second.adapter_dir / "adapter_model.safetensors").read_bytes() == b"\0" * 64

    uri = mirror.adapter_uri(first)
    folder = local_adapter(uri, tmp_path / "cache", storage_options())
    assert (Path(folder) / "adapter_config.json").is_file()
    downloads = []
    monkeypatch.setattr("reflection_assets.training.shared_checkpoints.download_folder",
                        lambda *args: downloads.append(args))
    assert local_adapter(uri, tmp_path / "cache", storage_options()) == folder and downloads == []  # once
    assert local_adapter("/local/adapter", tmp_path / "cache", storage_options()) == "/local/adapter"


def test_two_nodes_with_one_key_train_it_once(mirror, tmp_path):
    outcomes: dict[str, str] = {}
    logs: dict[str, list[str]] = {"a": [], "b": []}

    def node(name: str, delay: float) -> None:
        time.sleep(delay)
        layout = CheckpointLayout.under(tmp_path / f"node-{name}", "full", "k2")
        outcomes[name] = reuse_or_train(mirror, layout, logs[name].append, seconds=1.0)

    threads = [threading.Thread(target=node, args=("a", 0.0)), threading.Thread(target=node, args=("b", 0.3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == {"a": "trained", "b": "reused"}
    assert any("another node is training this checkpoint key" in line for line in logs["b"])
