"""`train` and `score` take their options from the settings dataclasses: every field, once, explained."""

from __future__ import annotations

from dataclasses import fields

import pytest

from reflection_assets.cli import build_parser
from reflection_assets.scoring.settings import ScoringConfig
from reflection_assets.training.settings import LoraSettings


def help_of(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        build_parser([command, "--help"]).parse_args([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_train_help_lists_every_training_setting(capsys):
    text = help_of("train", capsys)
    assert "--lr-scheduler" in text and "--activation-checkpointing, --no-activation-checkpointing" in text
    for spec in fields(LoraSettings):
        assert "--" + spec.name.replace("_", "-") in text, spec.name


def test_train_options_reach_every_setting():
    argv = ["train", "--data", "x.jsonl", "--lr-scheduler", "cosine", "--no-activation-checkpointing",
            "--target-modules", "q_proj,v_proj", "--precision", "bf16", "--packing"]
    from reflection_assets.commands.train import settings_from

    settings = settings_from(build_parser(argv).parse_args(argv))
    assert settings == LoraSettings(lr_scheduler="cosine", activation_checkpointing=False,
                                    target_modules=("q_proj", "v_proj"), precision="bf16", packing=True)


def test_score_options_are_the_scoring_settings(capsys):
    text = help_of("score", capsys)
    for spec in fields(ScoringConfig):
        assert "--" + spec.name.replace("_", "-") in text, spec.name
    assert "(default: 512)" in text and "(default: bos)" in text
    from reflection_assets.commands.score import ScoringConfig as used
    from reflection_assets.dataclass_args import dataclass_from_args

    argv = ["score", "--input", "a.jsonl", "--output", "b.jsonl", "--start-token", "eos", "--max-length", "64"]
    assert dataclass_from_args(used, build_parser(argv).parse_args(argv)) == ScoringConfig(start_token="eos",
                                                                                             max_length=64)


def test_the_student_resource_scores_with_the_scoring_settings_defaults():
    from resources.student import StudentModel

    assert StudentModel().scoring_config() == ScoringConfig()
    for name in ("start_token", "max_length"):
        assert StudentModel.model_fields[name].description  # the launchpad explains it, from the same owner
