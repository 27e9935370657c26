"""Shared fixtures: every test gets its own data folder (warehouse, MLflow store, exports);
the de-quantized model cache is shared so the bundled model is converted once per machine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from support.xdist_groups import xdist_group_of

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("REFLECTION_MODELS_DIR", str(REPO / "data" / "models"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = xdist_group_of(Path(item.fspath).relative_to(REPO).as_posix())
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def migrated_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store with its schema migrated, made once per test process.

    Creating a store runs MLflow's ~50 alembic migrations (3-6 s here); every test that logs a run
    would pay that. Each test gets a copy instead; the tests of the store's creation itself
    (`fresh_mlflow_store` mark) start without one."""
    from mlflow.tracking import MlflowClient

    database = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{database}").search_experiments()  # creates and migrates the store
    return database


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    """Point runtime state (warehouse, MLflow, inbox, exports) at a per-test folder."""
    data = tmp_path / "data"
    if request.node.get_closest_marker("fresh_mlflow_store") is None:
        data.mkdir()
        shutil.copyfile(request.getfixturevalue("migrated_mlflow_store"), data / "mlflow.db")
    monkeypatch.setenv("REFLECTION_DATA_DIR", str(data))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("REFLECTION_WAREHOUSE", raising=False)
    monkeypatch.delenv("REFLECTION_INBOX", raising=False)
    monkeypatch.delenv("REFLECTION_DATA", raising=False)
    monkeypatch.delenv("REFLECTION_EVAL_FILE", raising=False)
    monkeypatch.delenv("REFLECTION_DECONTAMINATE", raising=False)  # a user's benchmarks are not the tests'
    monkeypatch.delenv("REFLECTION_DECONTAMINATE_NGRAM", raising=False)
    return data


@pytest.fixture(scope="session")
def bundled_model():
    """The real embedded student/teacher (SmolLM2-135M-Instruct), loaded once per session."""
    from reflection_assets.model_store import load_model_and_tokenizer

    return load_model_and_tokenizer("bundled")


@pytest.fixture
def dagster_instance():
    import dagster as dg

    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random Llama saved as a model folder, for training and graph tests (seconds, not minutes)."""
    from tests.support.training import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture(scope="session")
def shared_stores():
    """Postgres, an S3-compatible store and an MLflow server on loopback, once per test process
    (tests/support/shared_stores.py; their tests share one xdist group)."""
    from support.shared_stores import SharedStoreServers, postgres_bin

    bin_dir = postgres_bin()
    if bin_dir is None:
        message = "Postgres is not installed (apt-get install postgresql; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    servers = SharedStoreServers()
    try:
        yield servers.start(bin_dir)
    finally:
        servers.stop()
