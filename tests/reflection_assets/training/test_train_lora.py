"""train_lora on a tiny Llama folder: the adapter is real, resumes exactly, is reused, and skips with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reflection_assets.schema import Pair
from reflection_assets.training import LoraSettings, train_lora
from reflection_assets.training.statuses import REUSED, SKIPPED, TRAINED
from tests.support.training import sample_pairs

# 12 rows, batch 2, 2 epochs: 12 optimizer steps in a few seconds; a high rate so the adapter moves.
FAST = LoraSettings(
    rank=4, alpha=8, dropout=0.0, epochs=2, batch_size=2, learning_rate=5e-3, max_length=128, save_steps=2, min_rows=2
)


def quiet(_: str) -> None:
    pass


def test_adapter_loads_with_peft_and_changes_the_model(tiny_base: str, tmp_path: Path):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    outcome = train_lora(sample_pairs(), tiny_base, FAST, tmp_path, "selective", log=quiet)
    assert outcome.status == TRAINED and outcome.steps == 12 and outcome.rows_trained == 12
    adapter = Path(outcome.adapter_path)
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "training_args.json"} <= {
        p.name for p in adapter.iterdir()
    }
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["modules_to_save"] is None and config["r"] == 4
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert all("lora_" in name for name in weights)  # LoRA only: no embeddings or heads saved
    assert any(w.abs().sum() > 0 for name, w in weights.items() if "lora_B" in name)
    losses = [e["loss"] for e in outcome.log_history if "loss" in e]
    assert len(losses) == outcome.steps
    # 12 rows, batch 2, 2 epochs: the start and end figures are the two epochs' mean losses
    assert outcome.loss_window == "epoch"
    assert outcome.first_loss == pytest.approx(sum(losses[:6]) / 6)
    assert outcome.final_loss == pytest.approx(sum(losses[6:]) / 6)
    assert all("step_seconds" in e and "peak_memory_mb" in e for e in outcome.log_history if "loss" in e)

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    base = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    ids = tokenizer("Explain light 0.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = base(ids).logits
    tuned = PeftModel.from_pretrained(base, str(adapter)).eval()
    with torch.no_grad():
        after = tuned(ids).logits
        generated = tuned.generate(ids, max_new_tokens=5, do_sample=False)
    assert not torch.allclose(before, after, atol=1e-4)
    assert generated.shape[1] > ids.shape[1]


class Interrupt(RuntimeError):
    pass


def interrupt_at(step: int):
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise Interrupt(f"killed at step {step}")

    return Stop()


def test_interrupted_training_resumes_where_it_stopped(tiny_base: str, tmp_path: Path):
    whole = train_lora(sample_pairs(), tiny_base, FAST, tmp_path / "whole", "selective", log=quiet)

    root = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        train_lora(sample_pairs(), tiny_base, FAST, root, "selective", callbacks=[interrupt_at(5)], log=quiet)
    folder = next((root / "selective").iterdir())
    assert not (folder / "FINISHED").exists()
    resumed = train_lora(sample_pairs(), tiny_base, FAST, root, "selective", log=quiet)

    assert resumed.status == TRAINED and resumed.resumed_from_step == 4  # step 5 was not saved
    assert resumed.steps == whole.steps
    steps = [e["step"] for e in resumed.log_history if "loss" in e]
    assert steps == sorted(set(steps)) == list(range(1, whole.steps + 1))  # the curve continues, no step twice
    whole_loss = {e["step"]: e["loss"] for e in whole.log_history if "loss" in e}
    resumed_loss = {e["step"]: e["loss"] for e in resumed.log_history if "loss" in e}
    assert resumed_loss[5] == pytest.approx(whole_loss[5], abs=1e-4)  # the first step after the resume
    assert resumed.final_loss == pytest.approx(whole.final_loss, abs=1e-4)
    assert not (folder / "trainer").exists()  # intermediate checkpoints go once finished


def test_unchanged_inputs_reuse_the_finished_adapter(tiny_base: str, tmp_path: Path):
    first = train_lora(sample_pairs(), tiny_base, FAST, tmp_path, "random", log=quiet)
    weights = Path(first.adapter_path) / "adapter_model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = train_lora(sample_pairs(), tiny_base, FAST, tmp_path, "random", log=quiet)
    assert again.status == REUSED and again.key == first.key
    assert weights.stat().st_mtime_ns == stamp and not (Path(first.adapter_path).parent / "trainer").exists()
    assert again.final_loss == first.final_loss and again.trained_row_ids == first.trained_row_ids
    changed = train_lora(sample_pairs()[:-1], tiny_base, FAST, tmp_path, "random", log=quiet)
    assert changed.status == TRAINED and changed.key != first.key


def test_tiny_arm_is_a_reasoned_skip(tiny_base: str, tmp_path: Path):
    outcome = train_lora(sample_pairs(1), tiny_base, FAST, tmp_path, "selective", log=quiet)
    assert outcome.status == SKIPPED and "min_rows=2" in outcome.skipped_reason
    assert outcome.adapter_path == "" and outcome.rows_given == 1


def test_rows_whose_prompt_fills_max_length_are_counted_out(tiny_base: str, tmp_path: Path):
    from dataclasses import replace

    long = [Pair(instruction="Explain light " * 40, output="Plants. [End]", row_id=f"long{i}") for i in range(3)]
    short = [Pair(instruction="Explain sun.", output="Plants use sun. [End]", row_id="short")]
    settings = replace(FAST, max_length=48)
    outcome = train_lora(long + short, tiny_base, settings, tmp_path, "selective", log=quiet)
    assert outcome.status == SKIPPED and "1 of 4 rows left after the trainer's filtering" in outcome.skipped_reason
