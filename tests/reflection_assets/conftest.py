import pytest


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random Llama saved as a model folder, for training tests (seconds, not minutes)."""
    from tests.support.training import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("tiny-llama")))
