"""LoRA training throughput, side by side in one process on the same rows and model.

CPU part (the bundled SmolLM2-135M-Instruct, demo rows in the chat template, LoRA all-linear):
- fp32 without packing (the default), fp32 with padding-free packing, bf16 autocast without packing;
- training tokens/s (non-padding tokens the trainer counted, over the step times after the first
  step, which carries one-off warm-up), and the largest per-step loss difference bf16 vs fp32.
GPU part (only where CUDA is present; otherwise reported as "not measured"): a ~1.1B Llama-shaped
model built from a config (random weights, no download; SmolLM2's tokenizer), bf16 LoRA against
4-bit QLoRA (nf4, double quantization): tokens/s and peak memory.

    python benchmarks/train_throughput.py --rows 32 --steps 6 --rounds 2
    python benchmarks/train_throughput.py --part gpu --steps 20
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEMO = REPO / "reflection_assets" / "demo_data" / "demo_train.jsonl"


def demo_pairs(n: int) -> list:
    from reflection_assets.schema import Pair

    rows = [json.loads(line) for line in DEMO.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = (rows * (n // len(rows) + 1))[:n]  # repeat the 68 demo rows when more are asked
    return [
        Pair(instruction=r["instruction"], input=r.get("input", ""), output=r["output"], row_id=str(i))
        for i, r in enumerate(rows)
    ]


def run_case(label: str, base: str, pairs: list, settings) -> dict:
    """Train `settings.max_steps` steps in a scratch folder; per-step tokens, seconds and losses."""
    from reflection_assets.model_store import load_tokenizer
    from reflection_assets.training.checkpoints import CheckpointLayout
    from reflection_assets.training.dataset import training_examples
    from reflection_assets.training.trainer import build_trainer, load_base, sft_config, silence_bitsandbytes

    silence_bitsandbytes()
    tokenizer = load_tokenizer(base)
    examples = training_examples(pairs, tokenizer)
    with tempfile.TemporaryDirectory() as folder:
        args = sft_config(settings, CheckpointLayout(Path(folder)))  # first: the load reads its device
        device = str(args.device)
        model = load_base(base, settings, args)
        trainer = build_trainer(model, tokenizer, examples, settings, args, device, ())
        if device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
    steps = [e for e in trainer.state.log_history if "loss" in e]
    tokens = [e["num_input_tokens_seen"] for e in steps]
    per_step = [b - a for a, b in zip([0, *tokens[:-1]], tokens, strict=True)]
    timed = steps[1:] or steps  # the first step pays one-off costs (allocations, kernels)
    seconds = sum(e["step_seconds"] for e in timed)
    counted = sum(per_step[1:] or per_step)
    return {
        "case": label,
        "steps": len(steps),
        "wall_s": round(wall, 1),
        "tokens_per_step": round(sum(per_step) / len(per_step), 1),
        "tokens_per_s": round(counted / seconds, 1) if seconds else math.nan,
        "s_per_step": round(seconds / len(timed), 2),
        "peak_memory_mb": steps[-1].get("peak_memory_mb"),
        "losses": [round(float(e["loss"]), 5) for e in steps],
    }


def cpu_part(args: argparse.Namespace) -> list[dict]:
    from reflection_assets.training.settings import LoraSettings

    base = LoraSettings(
        rank=8,
        alpha=16,
        dropout=0.0,
        batch_size=args.batch_size,
        max_length=args.max_length,
        max_steps=args.steps,
        save_steps=10**6,
        warmup=0,
        device="cpu",
        precision="fp32",
    )
    cases = [
        ("fp32", base),
        ("fp32+packing", replace(base, packing=True)),
        ("bf16-autocast", replace(base, precision="bf16")),
    ]
    pairs = demo_pairs(args.rows)
    results = []
    for round_no in range(1, args.rounds + 1):
        for label, settings in cases:
            result = run_case(label, "bundled", pairs, settings)
            result["round"] = round_no
            results.append(result)
            print(json.dumps(result), flush=True)
    return results


def cpu_report(results: list[dict]) -> None:
    for round_no in sorted({r["round"] for r in results}):
        rows = {r["case"]: r for r in results if r["round"] == round_no}
        fp32, packed, bf16 = rows["fp32"], rows["fp32+packing"], rows["bf16-autocast"]
        diff = max(abs(a - b) for a, b in zip(fp32["losses"], bf16["losses"], strict=True))
        print(
            f"round {round_no}: fp32 {fp32['tokens_per_s']} tok/s ({fp32['s_per_step']} s/step); "
            f"packing {packed['tokens_per_s']} tok/s -> {packed['tokens_per_s'] / fp32['tokens_per_s']:.2f}x; "
            f"bf16 autocast {bf16['tokens_per_s']} tok/s -> {bf16['tokens_per_s'] / fp32['tokens_per_s']:.2f}x; "
            f"max |loss bf16 - fp32| over {len(fp32['losses'])} steps = {diff:.4f} "
            f"(fp32 losses {fp32['losses'][0]} -> {fp32['losses'][-1]})"
        )


def llama_1b_folder(folder: Path) -> str:
    """A ~1.1B Llama (TinyLlama's shape) with random weights and SmolLM2's tokenizer, saved as bf16."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from reflection_assets.model_store import load_tokenizer

    tokenizer = load_tokenizer("bundled")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return str(folder)


def gpu_part(args: argparse.Namespace) -> list[dict]:
    import torch

    from reflection_assets.training.settings import LoraSettings

    if not torch.cuda.is_available():
        print("GPU: not measured (no CUDA device here)")
        return []
    base = LoraSettings(
        rank=16,
        alpha=32,
        dropout=0.0,
        batch_size=args.gpu_batch_size,
        max_length=args.max_length,
        max_steps=args.steps,
        save_steps=10**6,
        warmup=0,
        device="cuda",
        precision="bf16",
    )
    pairs = demo_pairs(args.gpu_batch_size * args.steps)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        path = llama_1b_folder(Path(folder))
        for label, settings in (("bf16", base), ("qlora-4bit", replace(base, load_in_4bit=True))):
            result = run_case(label, path, pairs, settings)
            result["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
            results.append(result)
            print(json.dumps(result), flush=True)
            torch.cuda.empty_cache()
    bf16, qlora = results
    print(
        f"GPU ({torch.cuda.get_device_name()}): bf16 {bf16['tokens_per_s']} tok/s, {bf16['peak_memory_mb']} MiB; "
        f"4-bit {qlora['tokens_per_s']} tok/s ({qlora['tokens_per_s'] / bf16['tokens_per_s']:.2f}x), "
        f"{qlora['peak_memory_mb']} MiB ({qlora['peak_memory_mb'] / bf16['peak_memory_mb']:.2f}x)"
    )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("cpu", "gpu", "all"), default="all")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the CPU cases (the machine's load varies)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--gpu-batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write every case as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; torch threads {torch.get_num_threads()}")
    results = []
    if args.part in ("cpu", "all"):
        cpu = cpu_part(args)
        cpu_report(cpu)
        results += cpu
    if args.part in ("gpu", "all"):
        results += gpu_part(args)
    print(f"load average after {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
