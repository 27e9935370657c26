"""Shared fixtures: every test gets its own data folder (warehouse, MLflow store, exports);
the de-quantized model cache is shared so the bundled model is converted once per machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("REFLECTION_MODELS_DIR", str(REPO / "data" / "models"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point runtime state (warehouse, MLflow, inbox, exports) at a per-test folder."""
    data = tmp_path / "data"
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
