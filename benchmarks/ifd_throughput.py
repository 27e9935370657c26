"""IFD scoring throughput: the batched engine against a one-sample-at-a-time reference loop.

Both run in one process on the same pairs and model: the reference does what the research code
does (one forward pass per sequence, full logits, the model's own loss; four passes per pair)
under this project's tokenization rules; the engine batches, dedupes, runs shared prompt prefixes
once and projects to the vocabulary only at scored positions. Prints both times, the ratio, tokens/s and the worst
deviation of loss_cond / loss_alone / rloss_cond / rloss_alone. On CUDA (bf16) it also reports
model FLOPs utilisation against the card's dense bf16 matmul rate, measured here.

Data: Alpaca pairs from ../shared/data/alpaca_cherry_5pct.json (beside the repo) when present,
else the demo set shipped in the package.

    python benchmarks/ifd_throughput.py --n 120 --max-length 256 1024
    python benchmarks/ifd_throughput.py --model llama1b --device cuda --n 512   # GPU, random 1B Llama
    python benchmarks/ifd_throughput.py --reference-only --input P.jsonl --output S.jsonl  # whole-process reference
    python benchmarks/ifd_throughput.py --write-pairs P.jsonl --n 120
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ALPACA = REPO.parent / "shared" / "data" / "alpaca_cherry_5pct.json"
DEMO = REPO / "reflection_assets" / "demo_data" / "demo_train.jsonl"
LOSS_FIELDS = ("loss_cond", "loss_alone", "rloss_cond", "rloss_alone")


# --- data -------------------------------------------------------------------------------------
def load_rows(n: int) -> tuple[list[dict], str]:
    """Up to `n` distinct rows (instruction, input, output): Alpaca when present, else the demo set."""
    if ALPACA.is_file():
        rows, source = json.loads(ALPACA.read_text(encoding="utf-8")), str(ALPACA)
    else:
        print(f"note: {ALPACA} not found, using the demo set {DEMO}", file=sys.stderr)
        rows = [json.loads(line) for line in DEMO.read_text(encoding="utf-8").splitlines() if line.strip()]
        source = str(DEMO)
    seen, out = set(), []
    for row in rows:
        key = (row.get("instruction", ""), row.get("input", ""), row.get("output", ""))
        if key not in seen and key[0].strip() and key[2].strip():
            seen.add(key)
            out.append({"id": str(len(out)), "instruction": key[0], "input": key[1], "output": key[2]})
        if len(out) == n:
            break
    return out, source


def to_pairs(rows: list[dict]) -> list:
    from reflection_assets.schema import Pair

    return [
        Pair(instruction=r["instruction"], input=r.get("input", ""), output=r["output"], row_id=r["id"]) for r in rows
    ]


# --- models -----------------------------------------------------------------------------------
def llama1b(tokenizer, device: str, dtype):
    """A ~1.1B-parameter Llama-3.2-1B-shaped model with random weights (throughput only)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=4096, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    return model.eval()


def load(model: str, device: str | None, dtype: str | None):
    """A Student: the bundled/other reference through the model store, or the random 1B Llama."""
    from reflection_assets.model_store import load_tokenizer, pick_device, pick_dtype
    from reflection_assets.scoring.student import Student, load_student

    if model != "llama1b":
        return load_student(model, device=device, dtype=dtype)
    device = pick_device(device)
    tokenizer = load_tokenizer("bundled")
    return Student(llama1b(tokenizer, device, pick_dtype(dtype, device)), tokenizer, "random:llama1b")


# --- measurement ------------------------------------------------------------------------------
def sync(student) -> None:
    import torch

    if student.device_kind == "cuda":
        torch.cuda.synchronize()


def timed(student, fn):
    """(wall seconds, process CPU seconds, result)."""
    sync(student)
    started, cpu = time.perf_counter(), time.process_time()
    result = fn()
    sync(student)
    return time.perf_counter() - started, time.process_time() - cpu, result


def dense_bf16_flops(seconds: float = 2.0, size: int = 8192) -> float:
    """Measured dense bf16 matmul rate of this card (FLOP/s), the MFU denominator."""
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(10):
            a @ b
        n += 10
        torch.cuda.synchronize()
    return 2.0 * size**3 * n / (time.perf_counter() - started)


def worst_deviation(fast, slow) -> float:
    worst = 0.0
    for a, b in zip(fast, slow):
        for field in LOSS_FIELDS:
            x, y = getattr(a, field), getattr(b, field)
            if (x is None) != (y is None):
                return float("inf")
            if x is not None:
                worst = max(worst, abs(x - y))
    return worst


def compare(
    student, pairs, max_length: int, template: str | None, batch_tokens: int | None, peak: float | None
) -> dict:
    """Reference then engine on the same pairs; returns the figures (also printed)."""
    from reflection_assets.scoring.reference import reference_score_pairs
    from reflection_assets.scoring.scorer import ScoringConfig, plan_pairs, score_pairs, settings_for, unique_sequences

    config = ScoringConfig(template=template, max_length=max_length, batch_tokens=batch_tokens)
    settings = settings_for(student, config)
    plans = plan_pairs(student, settings, pairs)
    all_tokens = sum(s.length for p in plans for plan in p for s in (plan.cond, plan.alone) if s is not None)
    unique_tokens = sum(s.length for s in unique_sequences(plans))
    score_pairs(pairs[:2], student, config)  # warm-up (allocator, kernels), not timed
    t_ref, cpu_ref, slow = timed(student, lambda: reference_score_pairs(pairs, student, config))
    processed_before = student.engine.tokens_processed
    t_eng, cpu_eng, fast = timed(student, lambda: score_pairs(pairs, student, config))
    processed = student.engine.tokens_processed - processed_before  # shared prefixes run once
    figures = {
        "pairs": len(pairs), "max_length": max_length, "template": settings.template,
        "device": student.device_kind, "dtype": student.dtype_name,
        "reference_s": round(t_ref, 2), "engine_s": round(t_eng, 2), "ratio": round(t_ref / t_eng, 2),
        "reference_cpu_s": round(cpu_ref, 2),
        "engine_cpu_s": round(cpu_eng, 2),
        "cpu_ratio": round(cpu_ref / cpu_eng, 2),
        "reference_tok_s": round(all_tokens / t_ref, 1), "engine_tok_s": round(unique_tokens / t_eng, 1),
        "tokens_reference": all_tokens, "tokens_engine": unique_tokens, "tokens_engine_processed": processed,
        "worst_abs_diff": worst_deviation(fast, slow),
        "statuses_ok": sum(s.ifd_status == "ok" and s.rifd_status == "ok" for s in fast),
    }  # fmt: skip
    if peak:
        params = sum(p.numel() for p in student.model.parameters())
        figures["params"] = params
        figures["peak_bf16_tflops"] = round(peak / 1e12, 1)
        figures["mfu_reference"] = round(2 * params * all_tokens / t_ref / peak, 4)
        figures["mfu_engine"] = round(2 * params * processed / t_eng / peak, 4)  # only tokens really computed
    print(json.dumps(figures), flush=True)
    return figures


# --- whole-process reference (for benchmarks/score_cli_vs_reference.py) -------------------------
def reference_only(args) -> int:
    from reflection_assets.commands.score import read_pairs, write_rows
    from reflection_assets.scoring.reference import reference_score_pairs
    from reflection_assets.scoring.scorer import ScoringConfig

    started = time.perf_counter()
    pairs = read_pairs(Path(args.input))
    student = load(args.model, args.device, args.dtype)
    scores = reference_score_pairs(pairs, student, ScoringConfig(template=args.template, max_length=args.max_length[0]))
    write_rows(Path(args.output), [s.to_dict() for s in scores])
    print(f"reference: {len(scores)} rows in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=120, help="distinct pairs (default 120)")
    parser.add_argument("--max-length", type=int, nargs="+", default=[512])
    parser.add_argument("--template", default=None, help="default: the student's default (chat for SmolLM2)")
    parser.add_argument("--model", default="bundled", help="bundled, a model reference, or llama1b (random ~1B Llama)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--batch-tokens", type=int, default=None)
    parser.add_argument(
        "--reference-only", action="store_true", help="score --input into --output with the reference loop"
    )
    parser.add_argument("--input")
    parser.add_argument("--output")
    parser.add_argument("--write-pairs", metavar="PATH", help="write --n distinct pairs as JSONL and exit")
    args = parser.parse_args(argv)

    if args.write_pairs:
        rows, source = load_rows(args.n)
        Path(args.write_pairs).write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
        print(f"wrote {len(rows)} pairs from {source} to {args.write_pairs}", file=sys.stderr)
        return 0
    if args.reference_only:
        if not (args.input and args.output):
            parser.error("--reference-only needs --input and --output")
        return reference_only(args)

    import torch

    rows, source = load_rows(args.n)
    student = load(args.model, args.device, args.dtype)
    peak = dense_bf16_flops() if student.device_kind == "cuda" else None
    print(
        f"# {len(rows)} pairs from {source}; model {student.fingerprint}; {student.device_kind} {student.dtype_name}; "
        f"torch threads {torch.get_num_threads()}"
        + (f"; GPU {torch.cuda.get_device_name()} dense bf16 {peak / 1e12:.1f} TFLOP/s" if peak else ""),
        flush=True,
    )
    for max_length in args.max_length:
        compare(student, to_pairs(rows), max_length, args.template, args.batch_tokens, peak)
    return 0


if __name__ == "__main__":
    sys.exit(main())
