"""The launch protocol without launching: flags that rebuild the settings, the launcher command, the
rows file, what the ranks' reports say after a failure, and the launch's part of the key."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from reflection_assets.training.checkpoints import checkpoint_key
from reflection_assets.training.distributed import launch_fingerprint, zero3_reentrant_checkpointing
from reflection_assets.training.launch import (
    REPORT_DIR_ENV,
    Launch,
    RankReport,
    launch_failure,
    settings_arguments,
    write_pairs,
)
from reflection_assets.training.settings import LoraSettings


def parsed_settings(argv: list[str]) -> LoraSettings:
    from reflection_assets.cli import build_parser
    from reflection_assets.commands.train import settings_from

    full = ["train", "--data", "x.jsonl", *argv]
    return settings_from(build_parser(full).parse_args(full))


@pytest.mark.parametrize(
    "settings",
    [
        LoraSettings(),
        LoraSettings(rank=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj"), epochs=0.5,
                     learning_rate=1.25e-05, warmup=3, lr_scheduler="cosine", batch_size=2, packing=True,
                     precision="bf16", load_in_4bit=True, activation_checkpointing=False, device="cpu",
                     max_steps=7, save_steps=2, min_rows=1, collective_timeout=60, seed=11),
        LoraSettings(activation_checkpointing=True, learning_rate=1 / 3),
    ],
)
def test_the_flags_rebuild_exactly_the_settings(settings):
    assert parsed_settings(settings_arguments(settings)) == settings  # so the launched key is the asset's


def test_every_settings_field_has_a_help_text():
    from dataclasses import fields

    from reflection_assets.documented import help_texts

    help = help_texts(LoraSettings)
    assert set(help) == {f.name for f in fields(LoraSettings)} and all(help.values())


def test_rows_written_for_the_launch_read_back_as_the_same_pairs(tmp_path):
    from reflection_assets.commands.score import read_pairs
    from tests.support.training import sample_pairs

    pairs = sample_pairs(6)
    assert read_pairs(write_pairs(pairs, tmp_path / "rows.jsonl")) == pairs


def test_the_launcher_command(tmp_path):
    torchrun = Launch(2, python="py").command(["--data", "r.jsonl"])
    assert torchrun == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "reflection_assets.cli", "train", "--data", "r.jsonl"]
    config = tmp_path / "fsdp2.yaml"
    config.write_text("distributed_type: FSDP\n")
    accelerate = Launch(4, str(config), python="py").command([])
    assert accelerate[:7] == ["py", "-m", "accelerate.commands.launch", "--config_file", str(config.resolve()),
                              "--num_processes", "4"]
    with pytest.raises(ValueError, match="no such file"):
        Launch(2, str(tmp_path / "missing.yaml"))
    with pytest.raises(ValueError, match="num_processes"):
        Launch(0)


def report(folder: Path, rank: int, monkeypatch) -> RankReport:
    monkeypatch.setenv("RANK", str(rank))
    return RankReport(str(folder))


def test_a_failed_launch_names_each_rank(tmp_path, monkeypatch):
    report(tmp_path, 0, monkeypatch).started()
    report(tmp_path, 1, monkeypatch).started()
    report(tmp_path, 2, monkeypatch).started()
    report(tmp_path, 2, monkeypatch).failed(RuntimeError("CUDA out of memory"))
    (tmp_path / "rank-0.stopped.json").write_text(json.dumps({"rank": 0}))  # what the SIGTERM handler writes
    pid = json.loads((tmp_path / "rank-1.started.json").read_text())["pid"]
    failure = launch_failure(tmp_path, 4, exit_code=1)
    assert failure.reasons == [
        f"rank 1 (pid {pid}) died without a report: killed (SIGKILL, the out-of-memory killer) or crashed in "
        "native code",
        "rank 2 failed: RuntimeError: CUDA out of memory",
        "rank 3 never started",
        "rank(s) 0 stopped by the launcher after that",
    ]
    assert not failure.user_error  # a crash is worth a retry


def test_a_users_mistake_is_not_worth_a_retry(tmp_path, monkeypatch):
    for rank in (0, 1):
        report(tmp_path, rank, monkeypatch).started()
        report(tmp_path, rank, monkeypatch).failed(ValueError("dropout must be in [0, 1)"), user_error=True)
    failure = launch_failure(tmp_path, 2)
    assert failure.user_error and "rank 0 failed: ValueError: dropout must be in [0, 1)" in failure.message()
    assert launch_failure(tmp_path / "none", 1, exit_code=7).reasons == ["rank 0 never started"]


def test_no_report_outside_a_launch(tmp_path, monkeypatch, isolated_data_dir):
    monkeypatch.delenv(REPORT_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    quiet = RankReport()
    quiet.started()
    quiet.failed("x")
    quiet.finished()
    assert [p for p in tmp_path.iterdir() if p != isolated_data_dir] == []  # the data folder is conftest's own


def test_the_launch_enters_the_key_only_when_there_is_one(monkeypatch):
    for name in ("WORLD_SIZE", "ACCELERATE_USE_FSDP", "ACCELERATE_MIXED_PRECISION", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(name, raising=False)
    assert launch_fingerprint() == {}
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert launch_fingerprint() == {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launch_fingerprint() == {"processes": 2}
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    fsdp = launch_fingerprint()
    assert fsdp == {"processes": 2, "ACCELERATE_USE_FSDP": "true", "ACCELERATE_MIXED_PRECISION": "bf16"}

    settings, versions = LoraSettings(), {"torch": "x"}
    plain = checkpoint_key("base", [], settings, "chat", versions)
    assert checkpoint_key("base", [], settings, "chat", versions, {}) == plain  # one-process keys unchanged
    keys = {plain, checkpoint_key("base", [], settings, "chat", versions, {"processes": 2}),
            checkpoint_key("base", [], settings, "chat", versions, fsdp)}
    assert len(keys) == 3


def test_an_fsdp_config_on_cpus_is_refused_not_quietly_ddp(tmp_path, monkeypatch):
    from reflection_assets.training.checkpoints import CheckpointLayout
    from reflection_assets.training.trainer import sft_config

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ValueError, match="FSDP accelerate config needs GPUs"):
        sft_config(LoraSettings(device="cpu"), CheckpointLayout(tmp_path))


def test_one_process_on_a_named_gpu_other_than_the_first_says_how(tmp_path, monkeypatch):
    from reflection_assets.training.checkpoints import CheckpointLayout
    from reflection_assets.training.trainer import sft_config

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES=1"):
        sft_config(LoraSettings(device="cuda:1"), CheckpointLayout(tmp_path))


def test_zero3_gets_reentrant_checkpointing_where_transformers_reads_it():
    args = SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=3), activation_checkpointing=True,
                           activation_checkpointing_kwargs=None, gradient_checkpointing_kwargs=None)
    zero3_reentrant_checkpointing(args)
    assert args.activation_checkpointing_kwargs == {"use_reentrant": True}
    assert args.gradient_checkpointing_kwargs is args.activation_checkpointing_kwargs  # TRL sees it already set

    for plugin, checkpointing in ((None, True), (SimpleNamespace(zero_stage=2), True),
                                  (SimpleNamespace(zero_stage=3), False)):
        other = SimpleNamespace(deepspeed_plugin=plugin, activation_checkpointing=checkpointing,
                                activation_checkpointing_kwargs=None)
        zero3_reentrant_checkpointing(other)
        assert other.activation_checkpointing_kwargs is None
