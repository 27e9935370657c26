"""Options from a settings dataclass: names, types, choices, bool flags, help texts, and the round trip."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal

import pytest

from reflection_assets.dataclass_args import add_dataclass_arguments, dataclass_argv, dataclass_from_args
from reflection_assets.documented import default_of, documented, help_text, help_texts, mirrored


@dataclass(frozen=True)
class Knobs:
    steps: int = documented(3, "optimizer steps")
    rate: float = documented(0.5, "learning rate in 100% units")
    lr_scheduler: str = documented("linear", "scheduler name")
    packing: bool = documented(False, "pack rows")
    checkpointing: bool | None = documented(None, "recompute activations (unset: by device)")
    mode: Literal["fast", "exact"] = documented("fast", "how to run")
    template: Literal["alpaca", "chat"] | None = documented(None, "prompt template (unset: auto)")
    modules: tuple[str, ...] = documented(("all-linear",), "module names, comma-separated")
    budget: int | None = documented(None, "token budget (unset: per device)")


def parser_for(cls: type = Knobs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t", exit_on_error=False)
    add_dataclass_arguments(parser, cls)
    return parser


def parse(argv: list[str]) -> Knobs:
    return dataclass_from_args(Knobs, parser_for().parse_args(argv))


def test_no_options_give_the_defaults():
    assert parse([]) == Knobs()


def test_option_names_types_and_choices():
    knobs = parse(["--steps", "7", "--rate", "1e-3", "--lr-scheduler", "cosine", "--mode", "exact",
                   "--template", "chat", "--modules", "q_proj, v_proj", "--budget", "64"])
    assert knobs == Knobs(steps=7, rate=1e-3, lr_scheduler="cosine", mode="exact", template="chat",
                          modules=("q_proj", "v_proj"), budget=64)
    assert isinstance(knobs.steps, int) and isinstance(knobs.rate, float)
    for bad in (["--steps", "2.5"], ["--mode", "slow"], ["--template", "auto"]):
        with pytest.raises((argparse.ArgumentError, SystemExit)):
            parse(bad)


def test_bools_are_on_off_flags_and_an_optional_bool_stays_unset():
    assert parse(["--packing"]).packing is True and parse(["--no-packing"]).packing is False
    assert parse([]).checkpointing is None
    assert parse(["--checkpointing"]).checkpointing is True
    assert parse(["--no-checkpointing"]).checkpointing is False


def test_every_field_is_an_option_with_its_help_text_and_default():
    text = parser_for().format_help()
    for name, what in help_texts(Knobs).items():
        assert "--" + name.replace("_", "-") in text
        assert " ".join(what.split()[:2]) in " ".join(text.split())
    squeezed = " ".join(text.split())
    assert "optimizer steps (default: 3)" in squeezed  # a '%' in a help text does not break argparse
    assert "in 100% units (default: 0.5)" in squeezed
    assert "(default: all-linear)" in squeezed and "pack rows (default: false)" in squeezed
    assert "(unset: per device)" in squeezed and "per device) (default" not in squeezed


@pytest.mark.parametrize(
    "knobs",
    [
        Knobs(),
        Knobs(steps=1, rate=1 / 3, lr_scheduler="constant", packing=True, checkpointing=False, mode="exact",
              template="alpaca", modules=("a", "b"), budget=1),
        Knobs(checkpointing=True, rate=2e-4),
    ],
)
def test_argv_parses_back_to_the_same_instance(knobs):
    assert parse(dataclass_argv(knobs)) == knobs


def test_a_field_without_a_command_line_form_or_a_help_text_is_refused():
    @dataclass
    class Mapping:
        table: dict = documented(what="a mapping", default_factory=dict)

    @dataclass
    class Silent:
        steps: int = 3

    with pytest.raises(TypeError, match="no command-line form"):
        parser_for(Mapping)
    with pytest.raises(KeyError, match="no help text"):
        parser_for(Silent)
    with pytest.raises(ValueError, match="help text"):
        documented(3, "")


def test_mirrored_config_fields_take_the_settings_default_and_help():
    @dataclass
    class Settings:
        rows: int = documented(4, "rows kept")
        names: list = field(default_factory=list, metadata={"help": "names"})

    mirror = mirrored(Settings, "rows")
    assert (mirror.default, mirror.description) == (4, "rows kept")
    assert mirrored(Settings, "rows", default=0, description="0: all").default == 0
    assert default_of(Settings, "names") == [] and help_text(Settings, "names") == "names"
