import json

from reflection_assets.training.checkpoints import CheckpointLayout, checkpoint_key
from reflection_assets.training.dataset import TrainingExample
from reflection_assets.training.settings import LoraSettings

VERSIONS = {"torch": "1", "transformers": "2"}


def examples(*outputs: str) -> list[TrainingExample]:
    return [TrainingExample(f"r{i}", "prompt", text) for i, text in enumerate(outputs)]


def test_key_follows_rows_settings_base_and_libraries():
    base = checkpoint_key("fp", examples("a", "b"), LoraSettings(), "chat", VERSIONS)
    assert base == checkpoint_key("fp", examples("a", "b"), LoraSettings(), "chat", VERSIONS)
    assert base != checkpoint_key("fp", examples("a", "c"), LoraSettings(), "chat", VERSIONS)
    assert base != checkpoint_key("fp", examples("a", "b"), LoraSettings(rank=4), "chat", VERSIONS)
    assert base != checkpoint_key("other", examples("a", "b"), LoraSettings(), "chat", VERSIONS)
    assert base != checkpoint_key("fp", examples("a", "b"), LoraSettings(), "alpaca", VERSIONS)
    assert base != checkpoint_key("fp", examples("a", "b"), LoraSettings(), "chat", {**VERSIONS, "torch": "9"})
    # How often it saves or when it skips changes no number of the adapter.
    assert base == checkpoint_key("fp", examples("a", "b"), LoraSettings(save_steps=50, min_rows=1), "chat", VERSIONS)


def test_only_complete_trainer_checkpoints_count(tmp_path):
    layout = CheckpointLayout.under(tmp_path, "arm", "key")
    assert layout.last_trainer_checkpoint() is None
    for step in (2, 4, 6):
        (layout.trainer_dir / f"checkpoint-{step}").mkdir(parents=True)
    for step in (2, 4):  # checkpoint-6 was being written when the run died
        (layout.trainer_dir / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert layout.last_trainer_checkpoint().endswith("checkpoint-4")


def test_finished_only_with_marker_result_and_adapter(tmp_path):
    layout = CheckpointLayout.under(tmp_path, "arm", "key")
    layout.adapter_dir.mkdir(parents=True)
    (layout.adapter_dir / "adapter_config.json").write_text("{}")
    layout.write_result({"final_loss": 1.0})
    assert not layout.is_finished()  # README, adapter and numbers exist, but nothing said "finished"
    (layout.trainer_dir / "checkpoint-1").mkdir(parents=True)
    layout.mark_finished()
    assert layout.is_finished() and not layout.trainer_dir.exists()
    assert json.loads(layout.result_file.read_text()) == {"final_loss": 1.0}


def test_settings_reject_nonsense():
    import pytest

    with pytest.raises(ValueError, match="dropout"):
        LoraSettings(dropout=1.5)
    with pytest.raises(ValueError, match="precision"):
        LoraSettings(precision="fp8")
