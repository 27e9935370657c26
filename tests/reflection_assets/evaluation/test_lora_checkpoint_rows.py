import pandas as pd
import pytest

from reflection_assets.evaluation.checkpoints import (
    CheckpointTableError,
    attach_adapters,
    models_under_test,
    usable_checkpoints,
)
from reflection_assets.generation.engine import GenerationEngine, GenerationRequest


def row(arm, status, path="", reason=""):
    return {
        "arm": arm,
        "status": status,
        "skipped_reason": reason,
        "checkpoint_key": f"k-{arm}",
        "adapter_path": path,
        "base_model": "tiny",
        "base_fingerprint": "f",
    }


@pytest.fixture
def saved_adapter(tmp_path, tiny_peft):
    model, _ = tiny_peft
    model.save_pretrained(tmp_path / "adapters", selected_adapters=["first"])
    return tmp_path / "adapters" / "first"  # PEFT saves a named adapter in its own folder


def test_skipped_and_missing_adapters_are_left_out_with_a_reason(saved_adapter, tmp_path):
    table = pd.DataFrame(
        [
            row("selective", "trained", str(saved_adapter)),
            row("random", "reused", str(tmp_path / "gone")),
            row("ifd_topk", "skipped", reason="0 rows fit max_length"),
        ]
    )
    usable, skipped = usable_checkpoints(table)
    assert usable["arm"].tolist() == ["selective"]
    assert skipped == {
        "ifd_topk": "skipped in training: 0 rows fit max_length",
        "random": f"adapter folder missing: {tmp_path / 'gone'}",
    }
    assert [(m.name, m.adapter, m.key) for m in models_under_test(usable)] == [
        ("base", None, ""),
        ("selective", "selective", "k-selective"),
    ]


@pytest.mark.parametrize(
    "table, message",
    [
        (pd.DataFrame([{"arm": "selective"}]), "lacks columns"),
        (pd.DataFrame([row("random", "skipped"), row("random", "skipped")]), "several rows for \\['random seed 0'\\]"),
        (pd.DataFrame([row("random", "done")]), "unknown statuses \\['done'\\]"),
    ],
)
def test_a_malformed_table_is_named(table, message):
    with pytest.raises(CheckpointTableError, match=message):
        usable_checkpoints(table)


def test_attached_adapters_generate_like_the_original(saved_adapter, tiny_peft):
    from tests.support.tiny_lm import tiny_model

    original, tokenizer = tiny_peft
    usable, _ = usable_checkpoints(pd.DataFrame([row("selective", "trained", str(saved_adapter))]))
    loaded = attach_adapters(tiny_model(tokenizer), usable)
    prompt = tuple(tokenizer("Explain photosynthesis.", add_special_tokens=False)["input_ids"])
    ours = GenerationEngine(loaded, tokenizer).generate(
        [GenerationRequest(prompt, 8, "selective"), GenerationRequest(prompt, 8)]
    )
    theirs = GenerationEngine(original, tokenizer).generate(
        [GenerationRequest(prompt, 8, "first"), GenerationRequest(prompt, 8)]
    )
    assert [o.token_ids for o in ours] == [o.token_ids for o in theirs]


def test_each_seed_of_an_arm_is_its_own_model_under_test(tmp_path):
    from reflection_assets.evaluation.checkpoints import models_under_test, usable_checkpoints

    folders = []
    for seed in (0, 1):
        folder = tmp_path / f"random-{seed}"
        folder.mkdir()
        (folder / "adapter_config.json").write_text("{}")
        folders.append(folder)
    table = pd.DataFrame(
        [
            {**row("random", "trained"), "seed": "0", "adapter_path": str(folders[0]), "checkpoint_key": "k0"},
            {**row("random", "trained"), "seed": "1", "adapter_path": str(folders[1]), "checkpoint_key": "k1"},
            {**row("full", "skipped"), "seed": "1", "skipped_reason": "too few rows"},
        ]
    )
    usable, skipped = usable_checkpoints(table)
    assert skipped == {"full-seed1": "skipped in training: too few rows"}
    models = models_under_test(usable)
    assert [(m.name, m.seed, m.adapter, m.label) for m in models] == [
        ("base", 0, None, "base"),
        ("random", 0, "random", "random"),
        ("random", 1, "random-seed1", "random-seed1"),
    ]
