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
        (pd.DataFrame([row("random", "skipped"), row("random", "skipped")]), "several rows for arms \\['random'\\]"),
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
