#!/usr/bin/env python3
"""The project's one GPU check: every device-dependent path of reflection_assets, once, in <= 8 minutes on one H200.

On the lent GPU machine (the device tool's `run`; scripts/gpu_check.sh holds the exact call):

    bash scripts/gpu_check.sh      # installs .whl/*.whl, runs this script, writes $OUT/gpu_check.json + a log

Here, and in CI (tests/scripts/test_gpu_check.py), the same steps on tiny models and the CPU:

    python scripts/gpu_check.py --cpu --out results.json [--only scoring,evaluation]

Steps (each runs once, in its own try/except, under its own time cap):
  environment         torch/CUDA versions, device, bf16, a bf16 matmul rate, which optional packages import
  bnb_4bit            nf4 (bitsandbytes) weights of the tiny model load; their logits are close to bf16's and
                      equal to those of their own dequantized weights (--cpu: bitsandbytes' CPU backend)
  scoring             the LossEngine on the device vs CPU fp32 (statuses equal, losses within tolerance);
                      tokens/s and MFU on the ~1B model
  teacher_generation  GenerationEngine greedy output in fp32 on the device == CPU fp32 == model.generate per row,
                      rows of different lengths in one batch (catches NaN from masked holes under SDPA); tokens/s
  evaluation          two LoRA adapters + the base in one batch (PEFT adapter_names) == per-adapter generation;
                      lm-eval on the PeftModel through the project's harness when lm_eval imports
  training_bf16       `reflection-tuning train --precision bf16 --merge-into`: finite losses, adapter saved,
                      merged logits == PeftModel logits; a second identical run is "reused"
  training_qlora      the same with --load-in-4bit (CUDA and bitsandbytes only)
  fsdp2               `accelerate launch --config_file deploy/accelerate/fsdp2.yaml --num_processes 1 ... train`

Output: ONE JSON file, {"mode", "finished", "total_seconds", "steps": [{"step", "status", "passed", "seconds",
figures..., "error"?, "skipped_reason"?}, ...]}, rewritten after every step (a killed run keeps what was done).
status is "passed", "failed" or "skipped" (skipped always with its reason).

Models are Llama-shaped with random weights from a LlamaConfig (the bundled model cannot travel): a tiny one
for agreement checks and a ~1B one for throughput (a small one with --cpu), saved as model folders with a
byte-level BPE tokenizer trained here, so the project's own loading path (model_store, local directory) is
used. Imports: only the pure packages of reflection_assets; training goes through the `reflection-tuning
train` command in a subprocess, as a user runs it. Scoring composes the scorer's pure pieces (plan,
engine, combine) without a cache, so each one's device behaviour is seen on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the project need not be installed on the GPU machine
    sys.path.insert(0, str(REPO))

# -- budgets and tolerances -------------------------------------------------------------------------------------

TOTAL_BUDGET_S = {"cuda": 470.0, "cpu": 170.0}  # the H200 run stays under 8 minutes, start-up included
STEP_CAPS_S = {  # step -> (cap on the GPU, cap with --cpu)
    "environment": (60, 30),
    "bnb_4bit": (45, 20),
    "scoring": (100, 40),
    "teacher_generation": (70, 40),
    "evaluation": (70, 75),
    "training_bf16": (80, 70),
    "training_qlora": (60, 70),
    "fsdp2": (70, 70),
}
STEPS = tuple(STEP_CAPS_S)

FP32_LOSS_RTOL = 1e-4  # device fp32 vs CPU fp32, on a mean NLL: kernels differ only in summation order
BF16_LOSS_RTOL = 2e-2  # device bf16 vs CPU fp32 (the engine's own prefix probe allows the same)
MERGE_LOGITS_ATOL = 1e-4  # merged model vs PeftModel, both fp32 (tests/reflection_assets/commands/test_train.py)
# nf4 vs bf16 logits of the tiny model: ||a - b|| / ||b||, cosine. bitsandbytes' own nf4 round trip of its
# weights, run in bf16 on this CPU, gave 0.32 and 0.949 (random weights, std 0.1, quantization errors compound).
# Greedy paths in fp32: kernels chosen by the batch's shape order a near-tie differently, so a batched engine and a
# per-row generate may part where the reference's top two logits lie within rounding of each other. The exact
# check of the logic runs in float64 (rounding ~1e-16); in fp32 a parting counts only where the reference's margin
# (top-1 minus top-2 logit) is below this.
NEAR_TIE_LOGITS = 1e-3
NF4_REL_ERROR_MAX = 0.5
NF4_COSINE_MIN = 0.85
H200_BF16_DENSE_TFLOPS = 989.5  # datasheet (SXM), dense; KINDS.md measured ~790 on an 8192^3 matmul here
OPTIONAL_PACKAGES = ("trl", "bitsandbytes", "lm_eval", "flash_attn", "datasets", "peft", "accelerate", "duckdb")

# -- the models -------------------------------------------------------------------------------------------------

TINY = dict(  # agreement checks: GQA (4 query heads, 2 key/value heads), head_dim 32, decisive random logits
    hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    initializer_range=0.1,
)  # fmt: skip
BIG = {  # throughput: Llama-3.2-1B's body with a 32k vocabulary, untied head (~1.1B parameters)
    "cuda": dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=32000, tie_word_embeddings=False,
    ),
    "cpu": dict(
        hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=8192, tie_word_embeddings=False,
    ),
}  # fmt: skip
WORDS = (
    "plants use light water energy sugar leaves roots air soil sun rain seeds explain why how what the a of and "
    "to in is are it that this with for on as by from cells grow green make food carbon oxygen root stem flower "
    "fruit tree forest river cloud storm heat cold day night answer question number apples coins books shares"
).split()


class Skip(Exception):
    """A step that cannot run here, with the reason (recorded as skipped, not failed) and what was seen."""

    def __init__(self, reason: str, figures: dict | None = None) -> None:
        super().__init__(reason)
        self.figures = figures or {}


class StepTimeout(BaseException):
    """A step ran past its cap (BaseException: a library's `except Exception` must not swallow it)."""


@dataclass
class Context:
    cpu: bool
    device: str  # "cuda" | "cpu"
    work: Path
    deadline: float  # time.monotonic() at which the whole budget is spent
    cap_scale: float = 1.0  # every step cap times this (--cap-scale: a machine shared with other work)
    figures: dict[str, Any] = field(default_factory=dict)  # what a later step may use (the measured matmul rate)
    _tokenizer: Any = None
    _dirs: dict[str, Path] = field(default_factory=dict)
    _big: tuple[Any, Any] | None = None

    @property
    def mode(self) -> str:
        return "cpu" if self.cpu else "cuda"

    @property
    def fast_dtype(self) -> str:
        """What throughput is measured in: bf16 on the GPU, fp32 on a CPU (half precision is slow there)."""
        return "float32" if self.cpu else "bfloat16"

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = build_tokenizer()
        return self._tokenizer

    def model_dir(self, name: str) -> str:
        """A model folder (built once): "tiny" for agreement, "big" for throughput."""
        if name not in self._dirs:
            shape = TINY if name == "tiny" else BIG[self.mode]
            self._dirs[name] = save_model(self.work / "models" / name, self.tokenizer(), shape, self.device)
        return str(self._dirs[name])

    def big_model(self) -> tuple[Any, Any]:
        """The throughput model, loaded once through the model store (scoring and generation share it)."""
        if self._big is None:
            self._big = load(self.model_dir("big"), self.fast_dtype, self.device)
        return self._big


# -- tokenizer, models, data ------------------------------------------------------------------------------------


def build_tokenizer() -> Any:
    """A byte-level BPE trained here on the check's own vocabulary, with a ChatML template (offline)."""
    from tests.support.tiny_lm import bpe_tokenizer

    rng = random.Random(0)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(200)]
    corpus += ["You explain. Explain light. 0 1 2 3 4 5 6 7 8 9 #### [End]"] * 4
    return bpe_tokenizer(corpus, vocab_size=600)


def save_model(folder: Path, tokenizer: Any, shape: dict, device: str) -> Path:
    """A seeded random Llama of `shape`, initialised on `device` (fast for 1B on a GPU), saved with the tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if (folder / "config.json").is_file():
        return folder
    config = LlamaConfig(
        **{"vocab_size": len(tokenizer), **shape},
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    if shape is not TINY:
        model = model.to(torch.bfloat16)  # the big model is only ever run in bf16: half the bytes to write
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    del model
    free_memory()
    return folder


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def scoring_pairs(n: int, seed: int, shortest: int, longest: int) -> list:
    """Pairs of varied lengths; some with an input, a system prompt or earlier turns (every template path)."""
    from reflection_assets.schema import Pair, Turn

    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        history = (Turn("user", words(rng, 4)), Turn("assistant", words(rng, 6))) if i % 4 == 0 else ()
        pairs.append(
            Pair(
                instruction=f"Explain {words(rng, rng.randint(3, max(3, shortest)))}.",
                output=words(rng, rng.randint(shortest, longest)),
                input=words(rng, 5) if i % 5 == 1 else "",
                system="You explain." if i % 3 == 0 else "",
                history=history,
                row_id=f"p{i:04d}",
            )
        )
    return pairs


def chat_prompts(tokenizer: Any, n: int, seed: int, shortest: int, longest: int) -> list[tuple[int, ...]]:
    """Chat-templated prompt ids with a shared system turn and user turns of very different lengths."""
    from reflection_assets.scoring.templates import prompt_ids

    rng = random.Random(seed)
    return [
        tuple(prompt_ids(tokenizer, "chat", words(rng, rng.randint(shortest, longest)), "", "You explain.", ()))
        for _ in range(n)
    ]


def probe_ids(tokenizer: Any, rows: int, length: int, seed: int, device: str) -> Any:
    """A [rows, length] batch of chat-templated token ids (prompts cut to one length) for comparing logits."""
    import torch

    prompts = chat_prompts(tokenizer, rows, seed=seed, shortest=length, longest=length)
    return torch.tensor([list(p[:length]) for p in prompts], device=device)


def write_training_rows(path: Path, n: int = 12) -> Path:
    """The tests' training pairs (tests/support/training.py) as instruction/output JSON lines."""
    from tests.support.training import sample_pairs

    rows = [
        {"id": p.row_id, "instruction": p.instruction, "output": p.output, "system": p.system,
         "history": json.loads(p.history_json())}
        for p in sample_pairs(n)
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- small helpers ----------------------------------------------------------------------------------------------


def has(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def version_of(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package.replace("_", "-"))
    except PackageNotFoundError:
        try:
            return version(package)
        except PackageNotFoundError:
            return None


def free_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def load(ref: str, dtype: str, device: str) -> tuple[Any, Any]:
    """Through the project's loader (model_store, local directory reference)."""
    from reflection_assets.model_store import load_model_and_tokenizer

    model, tokenizer, _ = load_model_and_tokenizer(ref, dtype=dtype, device=device)
    return model, tokenizer


def expect(figures: dict, name: str, ok: bool) -> bool:
    """Record one named check; the step passes when every check holds."""
    figures.setdefault("checks", {})[name] = bool(ok)
    return bool(ok)


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(1.0, abs(b))


@contextlib.contextmanager
def time_cap(seconds: float) -> Iterator[None]:
    """Raise StepTimeout in this (main) thread after `seconds`."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise StepTimeout(f"ran past its cap of {seconds:.0f}s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def subprocess_env(ctx: Context) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    if ctx.cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""  # --cpu means the CPU, also on a machine with a GPU
    return env


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def summary(self) -> dict:
        """The train command's JSON summary: its last stdout line."""
        lines = [line for line in self.stdout.strip().splitlines() if line.strip()]
        if not lines:
            raise RuntimeError(f"no output (exit {self.returncode}): {self.tail()}")
        try:
            return json.loads(lines[-1])
        except ValueError:
            raise RuntimeError(f"last line is not JSON (exit {self.returncode}): {lines[-1][:300]}") from None

    def tail(self, lines: int = 6) -> str:
        return " | ".join(self.stderr.strip().splitlines()[-lines:])[-1500:]


def run_command(ctx: Context, cmd: list[str], timeout: float) -> Finished:
    """Run `cmd` in its own process group; on timeout or interruption end that group (launchers spawn workers)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=str(REPO), env=subprocess_env(ctx), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    log_file = ctx.work / "logs" / f"cmd-{int(started * 1000)}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{out}\n--- stderr\n{err}\n")
    return Finished(proc.returncode, out, err, time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- step: environment ------------------------------------------------------------------------------------------


def step_environment(ctx: Context) -> dict:
    import torch

    figures: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "transformers": version_of("transformers"),
        "device": ctx.device,
        "packages": {name: version_of(name) if has(name) else None for name in OPTIONAL_PACKAGES},
    }
    if ctx.device == "cuda":
        if not expect(figures, "cuda_available", torch.cuda.is_available()):
            return figures
        props = torch.cuda.get_device_properties(0)
        figures.update(
            device_name=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
        expect(figures, "bf16_supported", figures["bf16_supported"])
        figures["matmul_bf16_tflops"] = ctx.figures["matmul_tflops"] = matmul_tflops()
    else:
        figures.update(device_name=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    return figures


def matmul_tflops(n: int = 8192, reps: int = 10) -> float:
    """The chip's bf16 matmul rate on random data (KINDS.md's method: 3 warm-ups, mean of 10)."""
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / reps
    del a, b
    return round(2 * n**3 / seconds / 1e12, 1)


# -- step: bnb_4bit ---------------------------------------------------------------------------------------------


def step_bnb_4bit(ctx: Context) -> dict:
    # With --cpu this runs on bitsandbytes' CPU backend: not the kernels that matter, but CI then exercises
    # this step's own code before the one GPU run.
    if not has("bitsandbytes"):
        raise Skip("bitsandbytes is not importable (carry its wheel: scripts/gpu_wheels.sh)")
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    ref = ctx.model_dir("tiny")
    dense, tokenizer = load(ref, "bfloat16", ctx.device)
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )  # as reflection_assets.training.trainer.load_base builds it
    quantized = AutoModelForCausalLM.from_pretrained(
        ref, quantization_config=quantization, dtype=torch.bfloat16, device_map={"": ctx.device}, use_safetensors=True
    ).eval()
    ids = probe_ids(tokenizer, rows=4, length=32, seed=3, device=ctx.device)
    with torch.inference_mode():
        want = dense(input_ids=ids).logits.float()
        # The twin is read before the 4-bit forward: on a CPU with AVX512-BF16, bitsandbytes repacks a layer's
        # weight for its own kernel at the first inference forward, after which dequantize_4bit reads garbage.
        dequantized = dequantized_twin(dense, quantized)(input_ids=ids).logits.float()
        got = quantized(input_ids=ids).logits.float()
    figures: dict[str, Any] = {
        "linear4bit_modules": sum(type(m).__name__ == "Linear4bit" for m in quantized.modules()),
        "memory_mb": {
            "bf16": round(dense.get_memory_footprint() / 2**20, 3),
            "nf4": round(quantized.get_memory_footprint() / 2**20, 3),
        },
        "vs_bf16": logits_distance(got, want),
        "vs_dequantized_bf16": logits_distance(got, dequantized),
        "tolerance": {
            "vs_bf16": {"relative_error_max": NF4_REL_ERROR_MAX, "cosine_min": NF4_COSINE_MIN},
            "vs_dequantized_bf16": {"relative_error_max": BF16_LOSS_RTOL},
        },
    }
    expect(figures, "quantized_layers", figures["linear4bit_modules"] > 0)
    expect(figures, "finite", bool(torch.isfinite(got).all()))
    expect(figures, "close_to_bf16", figures["vs_bf16"]["relative_error"] <= NF4_REL_ERROR_MAX)
    expect(figures, "cosine_to_bf16", figures["vs_bf16"]["cosine"] >= NF4_COSINE_MIN)
    expect(figures, "computes_its_weights", figures["vs_dequantized_bf16"]["relative_error"] <= BF16_LOSS_RTOL)
    return figures


def dequantized_twin(dense: Any, quantized: Any) -> Any:
    """`dense` with every layer bitsandbytes quantized replaced by its dequantized nf4 weight (bf16, plain matmul):
    what the 4-bit kernels should compute, up to bf16 rounding."""
    import bitsandbytes.functional as bnb_functional

    for name, module in quantized.named_modules():
        if type(module).__name__ == "Linear4bit":
            weight = bnb_functional.dequantize_4bit(module.weight.data, module.weight.quant_state)
            dense.get_submodule(name).weight.data = weight.to(dense.dtype).reshape(module.out_features, -1)
    return dense


def logits_distance(got: Any, want: Any) -> dict:
    import torch

    return {
        "max_abs_diff": (got - want).abs().max().item(),
        "relative_error": ((got - want).norm() / want.norm()).item(),
        "cosine": torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0).item(),
        "top1_agreement": (got.argmax(-1) == want.argmax(-1)).float().mean().item(),
    }


# -- step: scoring ----------------------------------------------------------------------------------------------


def plan_scores(student: Any, pairs: list) -> tuple[list, list]:
    """(plans per pair, unique sequences): what `scoring.scorer.score_pairs` does before its cache and engine."""
    from reflection_assets.scoring.sequences import plan_ifd, plan_rifd, resolve_settings

    settings = resolve_settings(student.tokenizer, None, "bos", 512)
    plans = [(plan_ifd(student.tokenizer, settings, p), plan_rifd(student.tokenizer, settings, p)) for p in pairs]
    unique = dict.fromkeys(s for pair in plans for plan in pair for s in (plan.cond, plan.alone) if s is not None)
    return plans, list(unique)


def score(student: Any, pairs: list) -> list:
    """IFD and r-IFD ratios of every pair (score_pairs without the DuckDB cache)."""
    from reflection_assets.scoring.metrics import combine

    plans, seqs = plan_scores(student, pairs)
    losses: dict = {}
    for results in student.engine.run(seqs):
        losses.update(results)
    return [(combine(ifd, losses), combine(rifd, losses)) for ifd, rifd in plans]


def compare_scores(want: list, got: list) -> dict:
    """Statuses equal, and the largest relative difference of any loss."""
    same_status = all(w.status == g.status for pair_w, pair_g in zip(want, got) for w, g in zip(pair_w, pair_g))
    diffs = [
        rel(getattr(g, part), getattr(w, part))
        for pair_w, pair_g in zip(want, got)
        for w, g in zip(pair_w, pair_g)
        for part in ("cond", "alone")
        if getattr(w, part) is not None and getattr(g, part) is not None
    ]
    ok = sum(w.status == "ok" for pair in want for w in pair)
    return {"statuses_equal": same_status, "max_rel_loss_diff": max(diffs, default=math.nan), "ok_scores": ok}


def step_scoring(ctx: Context) -> dict:
    from reflection_assets.schema import Pair
    from reflection_assets.scoring.student import load_student

    figures: dict[str, Any] = {"tolerance": {"fp32_rel": FP32_LOSS_RTOL, "bf16_rel": BF16_LOSS_RTOL}}
    tiny = ctx.model_dir("tiny")
    pairs = scoring_pairs(12, seed=1, shortest=2, longest=60)
    pairs.append(Pair(instruction="Explain light.", output=" "))  # an empty response: a status, not a loss
    want = score(load_student(tiny, device="cpu", dtype="float32"), pairs)
    for dtype, tolerance in (("float32", FP32_LOSS_RTOL), ("bfloat16", BF16_LOSS_RTOL)):
        got = score(load_student(tiny, device=ctx.device, dtype=dtype), pairs)
        found = figures[f"{ctx.device}_{dtype}_vs_cpu_float32"] = compare_scores(want, got)
        expect(figures, f"{dtype}_statuses_equal", found["statuses_equal"])
        expect(figures, f"{dtype}_losses_close", found["max_rel_loss_diff"] <= tolerance)
    expect(figures, "some_scores_ok", found["ok_scores"] > 0)
    figures["throughput"] = scoring_throughput(ctx)
    return figures


def scoring_throughput(ctx: Context) -> dict:
    """Tokens/s of the LossEngine on the big model (bf16 on a GPU, after a warm-up), and MFU on a GPU."""
    import torch

    from reflection_assets.scoring.student import Student

    model, tokenizer = ctx.big_model()
    student = Student(model, tokenizer, fingerprint="gpu-check-big")
    body = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "lm_head" not in n)
    head = model.get_output_embeddings().weight.numel()
    n_pairs, longest, seconds_cap = (2048, 420, 20.0) if ctx.device == "cuda" else (8, 120, 2.0)
    pairs = scoring_pairs(n_pairs, seed=2, shortest=40, longest=longest)
    _, seqs = plan_scores(student, pairs)
    engine = student.engine
    for _ in engine.run(seqs[: 64 if ctx.device == "cuda" else 4]):  # warm-up: kernels chosen, memory pool grown
        pass
    synchronize(ctx.device)
    tokens_before, scored, started = engine.tokens_processed, 0, time.perf_counter()
    for results in engine.run(seqs):
        scored += sum(len(seq.scored) for seq in results)
        if time.perf_counter() - started > seconds_cap:
            break
    synchronize(ctx.device)
    seconds = time.perf_counter() - started
    tokens = engine.tokens_processed - tokens_before
    flops = 2 * body * tokens + 2 * head * scored  # the head runs only at scored positions
    figures = {
        "model_parameters": sum(p.numel() for p in model.parameters()),
        "dtype": ctx.fast_dtype,
        "tokens": tokens,
        "scored_tokens": scored,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens / seconds, 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if ctx.device == "cuda" else None,
        "mfu": None,
        "mfu_formula": "(2 x non-embedding, non-head params x tokens run + 2 x head params x scored tokens) / s / peak",
    }
    if ctx.device == "cuda":
        figures["mfu"] = round(flops / seconds / (H200_BF16_DENSE_TFLOPS * 1e12), 4)
        figures["mfu_peak_tflops"] = H200_BF16_DENSE_TFLOPS
        if ctx.figures.get("matmul_tflops"):
            figures["mfu_vs_measured_matmul"] = round(flops / seconds / (ctx.figures["matmul_tflops"] * 1e12), 4)
    return figures


# -- step: teacher_generation -----------------------------------------------------------------------------------


def reference_generate(model: Any, tokenizer: Any, ids: tuple[int, ...], new_tokens: int, adapter: Any = False) -> list:
    """One prompt alone through transformers' own generate (greedy; `adapter`: None = base, False = not PEFT)."""
    import torch

    kwargs = {
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "do_sample": False,
        "pad_token_id": tokenizer.pad_token_id,
        "temperature": None,
        "top_p": None,
        "top_k": None,
    }
    inputs = torch.tensor([ids], device=next(model.parameters()).device)
    with torch.inference_mode(), adapter_scope(model, adapter):
        out = model.generate(input_ids=inputs, **kwargs)
    return out[0, len(ids) :].tolist()


def differing(a: list, b: list) -> list[int]:
    return [i for i, (x, y) in enumerate(zip(a, b)) if list(x) != list(y)] + list(range(min(len(a), len(b)), len(a)))


def adapter_scope(model: Any, adapter: Any) -> contextlib.AbstractContextManager:
    """`adapter` as reference_generate reads it: None = the base of a PeftModel, False = not PEFT, else a name."""
    if adapter is None:
        return model.disable_adapter()
    if adapter is not False:
        model.set_adapter(adapter)
    return contextlib.nullcontext()


def partings(model: Any, rows: list[tuple], got: list, want: list) -> list[dict]:
    """For each row where `got` leaves the reference path `want`: the step, and the reference's logit margin there.

    rows: (prompt ids, adapter) per row. A margin within rounding (NEAR_TIE_LOGITS) is a near-tie two correct
    implementations may order differently; a clear margin is a logic error."""
    import torch

    found = []
    for i in differing(got, want):
        (prompt, adapter), a, b = rows[i], list(got[i]), list(want[i])
        step = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        ids = torch.tensor([list(prompt) + b[:step]], device=next(model.parameters()).device)
        with torch.inference_mode(), adapter_scope(model, adapter):
            logits = model(input_ids=ids).logits[0, -1].double()
        top = logits.topk(2).values
        found.append({
            "row": i,
            "step": step,
            "reference_margin": float(top[0] - top[1]),
            "taken_vs_reference": float(logits[a[step]] - logits[b[step]]) if step < min(len(a), len(b)) else None,
        })  # fmt: skip
    return found


def greedy_agreement(
    figures: dict, name: str, model: Any, tokenizer: Any, engine_run: Callable, rows: list[tuple]
) -> list:
    """Record `name` (fp32: every parting from transformers' generate a near-tie) and `name`_float64 (identical);
    returns generate's fp32 outputs."""
    import torch

    got = engine_run(model)
    want = [reference_generate(model, tokenizer, p, len(g), a) for (p, a), g in zip(rows, got)]
    figures[f"{name}_rows_differing"] = differing(got, want)
    found = partings(model, rows, got, want)
    figures[f"{name}_partings"] = found
    expect(figures, name, all(p["reference_margin"] < NEAR_TIE_LOGITS for p in found))
    model.to(torch.float64)
    try:
        got = engine_run(model)
        exact = differing(got, [reference_generate(model, tokenizer, p, len(g), a) for (p, a), g in zip(rows, got)])
    finally:
        model.to(torch.float32)
    figures[f"{name}_float64_rows_differing"] = exact
    expect(figures, f"{name}_float64", not exact)
    return want


def step_teacher_generation(ctx: Context) -> dict:
    from reflection_assets.generation.engine import GenerationEngine, GenerationRequest

    tiny = ctx.model_dir("tiny")
    tokenizer = ctx.tokenizer()
    # Prompt lengths from ~15 to ~110 tokens (prefill with holes wider than FEED_ONE_BY_ONE), and rows that
    # stop at different steps (finished rows leave the batch): the paths where SDPA meets masked positions.
    prompts = chat_prompts(tokenizer, 8, seed=4, shortest=1, longest=90)
    lengths = [8 + 4 * (i % 5) for i in range(len(prompts))]
    requests = [GenerationRequest(p, n, min_new_tokens=n) for p, n in zip(prompts, lengths)]

    def engine_run(model: Any) -> list:
        return [list(o.token_ids) for o in GenerationEngine(model, tokenizer).generate(requests)]

    figures: dict[str, Any] = {"rows": len(prompts), "prompt_tokens": [len(p) for p in prompts], "new_tokens": lengths}
    outputs = {}
    for device in dict.fromkeys(("cpu", ctx.device)):
        model, _ = load(tiny, "float32", device)
        outputs[device] = engine_run(model)
        if device == ctx.device:
            greedy_agreement(
                figures, "engine_equals_model_generate", model, tokenizer, engine_run, [(p, False) for p in prompts]
            )
        del model
    figures["rows_differing_from_cpu"] = differing(outputs[ctx.device], outputs["cpu"])
    expect(figures, "device_fp32_equals_cpu_fp32", not figures["rows_differing_from_cpu"])
    figures["throughput"] = generation_throughput(ctx)
    return figures


def generation_throughput(ctx: Context) -> dict:
    """Generated tokens/s of the engine on the big model (bf16 on a GPU): one batch, every row the same new tokens."""
    from reflection_assets.generation.engine import GenerationEngine, GenerationRequest

    model, tokenizer = ctx.big_model()
    rows, new, longest = (64, 128, 200) if ctx.device == "cuda" else (4, 8, 60)
    prompts = chat_prompts(tokenizer, rows, seed=5, shortest=20, longest=longest)
    engine = GenerationEngine(model, tokenizer)
    engine.generate([GenerationRequest(p, 2, min_new_tokens=2) for p in prompts[:4]])  # warm-up
    synchronize(ctx.device)
    started = time.perf_counter()
    outputs = engine.generate([GenerationRequest(p, new, min_new_tokens=new) for p in prompts])
    synchronize(ctx.device)
    seconds = time.perf_counter() - started
    generated = sum(o.new_tokens for o in outputs)
    return {
        "dtype": ctx.fast_dtype,
        "rows": rows,
        "prompt_tokens": sum(len(p) for p in prompts),
        "new_tokens_per_row": new,
        "seconds": round(seconds, 3),
        "generated_tokens_per_second": round(generated / seconds, 1),
        "forward_calls": engine.stats.forward_calls,
    }


# -- step: evaluation -------------------------------------------------------------------------------------------


def two_adapters(base: Any) -> Any:
    """A PeftModel with adapters "first" and "second", B weights clearly non-zero (each changes the output)."""
    import torch
    from peft import LoraConfig, get_peft_model

    config = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "up_proj", "down_proj"]}
    model = get_peft_model(base, LoraConfig(**config, init_lora_weights=False), adapter_name="first")
    model.add_adapter("second", LoraConfig(**config, init_lora_weights=False))
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator).to(param.device) * 0.5)
    return model.eval()


def step_evaluation(ctx: Context) -> dict:
    from reflection_assets.generation.engine import GenerationEngine, GenerationRequest

    base, tokenizer = load(ctx.model_dir("tiny"), "float32", ctx.device)
    model = two_adapters(base)
    prompts = chat_prompts(tokenizer, 4, seed=6, shortest=2, longest=60)
    plan = [(p, adapter) for p in prompts for adapter in ("first", "second", None)]
    new = 12
    requests = [GenerationRequest(p, new, adapter=a, min_new_tokens=new) for p, a in plan]

    def engine_run(model: Any) -> list:
        return [list(o.token_ids) for o in GenerationEngine(model, tokenizer).generate(requests)]

    figures: dict[str, Any] = {"rows": len(plan), "adapters": ["first", "second", "__base__"]}
    expected = greedy_agreement(figures, "mixed_equals_per_adapter", model, tokenizer, engine_run, plan)
    figures["prompts_where_adapters_differ"] = sum(
        len({tuple(e) for e in expected[k : k + 3]}) == 3 for k in range(0, len(plan), 3)
    )
    expect(figures, "adapters_matter", figures["prompts_where_adapters_differ"] > 0)
    figures["lm_eval"] = harness_check(ctx, model, tokenizer, figures)
    return figures


def harness_check(ctx: Context, model: Any, tokenizer: Any, figures: dict) -> dict:
    """The project's lm-eval harness on the PeftModel: the base and one adapter, 4 arithmetic items (1 with --cpu)."""
    if not has("lm_eval"):
        return {"skipped_reason": "lm_eval is not importable (carry it with scripts/gpu_wheels.sh to run it here)"}
    from reflection_assets.evaluation.harness import ARITHMETIC_TASK, run_harness, write_arithmetic_task
    from reflection_assets.evaluation.suites import arithmetic_items

    items = arithmetic_items(1 if ctx.cpu else 4, seed=0)
    started = time.perf_counter()
    folder = write_arithmetic_task(items, ctx.work / "lm_eval_task")
    results = run_harness(model, tokenizer, [None, "first"], [ARITHMETIC_TASK], folder, batch_size=8)
    found = {
        "seconds": round(time.perf_counter() - started, 2),
        "samples": {str(adapter): len(samples) for adapter, samples in results.items()},
        "exact_match": {str(a): sum(s.score for s in samples) / max(1, len(samples)) for a, samples in results.items()},
    }
    expect(figures, "lm_eval_every_item_scored", all(len(s) == len(items) for s in results.values()))
    expect(figures, "lm_eval_scores_are_0_or_1", all(s.score in (0.0, 1.0) for v in results.values() for s in v))
    return found


# -- steps: training_bf16, training_qlora, fsdp2 -----------------------------------------------------------------


def train_args(ctx: Context, name: str, extra: list[str]) -> list[str]:
    data = write_training_rows(ctx.work / "train.jsonl")
    return [
        "train", "--data", str(data), "--student", ctx.model_dir("tiny"),
        "--output", str(ctx.work / "checkpoints"), "--name", name,
        "--max-steps", "4", "--batch-size", "4", "--max-length", "128", "--min-rows", "2",
        "--learning-rate", "5e-3", "--precision", "bf16", "--save-steps", "2",
        *(["--device", "cpu"] if ctx.cpu else []), *extra,
    ]  # fmt: skip


def remaining(ctx: Context, cap_end: float) -> float:
    return max(1.0, min(cap_end, ctx.deadline) - time.monotonic() - 1.0)


def check_summary(figures: dict, summary: dict, status: str, steps: int) -> None:
    adapter = Path(summary.get("adapter_path") or "/nonexistent")
    expect(figures, "status_" + status, summary.get("status") == status)
    expect(
        figures,
        "losses_finite",
        # a run too short for a trend reports one mean loss (final_loss) and no first one: training.losses
        all(math.isfinite(float(summary.get(k) or math.nan)) for k in ("first_loss", "final_loss")[
            summary.get("loss_window") == "run":]),
    )
    expect(
        figures, "adapter_saved", (adapter / "adapter_config.json").is_file() and any(adapter.glob("adapter_model.*"))
    )
    expect(figures, f"steps_{steps}", summary.get("steps") == steps)


def merged_matches_peft(ctx: Context, adapter: str, merged: str) -> dict:
    """Logits of the merged folder vs the base + adapter as a PeftModel, both fp32 on the device."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tiny = ctx.model_dir("tiny")
    ids = probe_ids(ctx.tokenizer(), rows=3, length=24, seed=8, device=ctx.device)
    base = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).to(ctx.device).eval()
    with torch.inference_mode():
        plain = base(input_ids=ids).logits
        tuned = PeftModel.from_pretrained(base, adapter).eval()(input_ids=ids).logits
        folded = (
            AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
            .to(ctx.device)
            .eval()(input_ids=ids)
            .logits
        )
    return {
        "merged_vs_peft_max_abs_diff": (tuned - folded).abs().max().item(),
        "adapter_vs_base_max_abs_diff": (tuned - plain).abs().max().item(),
        "tolerance": MERGE_LOGITS_ATOL,
    }


def train_check(ctx: Context, name: str, extra: list[str], cap_end: float) -> dict:
    """Train through the CLI with a merge; check the summary, the folders and the merge; then a reused re-run."""
    merged = ctx.work / "merged" / name
    args = train_args(ctx, name, [*extra, "--merge-into", str(merged)])
    cmd = [sys.executable, "-m", "reflection_assets.cli", *args]
    first = run_command(ctx, cmd, remaining(ctx, cap_end))
    figures: dict[str, Any] = {
        "command": "reflection-tuning " + " ".join(args[:1] + [a for a in args[1:] if a.startswith("--")])
    }
    figures["train_exit"], figures["train_wall_seconds"] = first.returncode, round(first.seconds, 2)
    if not expect(figures, "train_exit_0", first.returncode == 0):
        figures["stderr_tail"] = first.tail()
        return figures
    summary = first.summary()
    figures["summary"] = summary
    check_summary(figures, summary, "trained", 4)
    merge = figures["merge"] = merged_matches_peft(ctx, summary["adapter_path"], str(merged))
    expect(figures, "merged_equals_peft", merge["merged_vs_peft_max_abs_diff"] <= MERGE_LOGITS_ATOL)
    expect(figures, "adapter_changes_logits", merge["adapter_vs_base_max_abs_diff"] > 0)
    again = run_command(ctx, cmd, remaining(ctx, cap_end))
    figures["rerun_exit"], figures["rerun_wall_seconds"] = again.returncode, round(again.seconds, 2)
    rerun = again.summary() if again.returncode == 0 else {"stderr_tail": again.tail()}
    figures["rerun_status"] = rerun.get("status")
    expect(
        figures,
        "rerun_reused",
        rerun.get("status") == "reused" and rerun.get("adapter_path") == summary["adapter_path"],
    )
    return figures


def step_training_bf16(ctx: Context, cap_end: float) -> dict:
    return train_check(ctx, "bf16", [], cap_end)


def step_training_qlora(ctx: Context, cap_end: float) -> dict:
    if ctx.cpu:
        raise Skip("QLoRA (--load-in-4bit) needs CUDA: the train command refuses it on a CPU by design")
    if not has("bitsandbytes"):
        raise Skip("bitsandbytes is not importable (carry its wheel: scripts/gpu_wheels.sh)")
    return train_check(ctx, "qlora", ["--load-in-4bit"], cap_end)


# `python -m reflection_assets.cli` plus one line on stderr saying what accelerate set up (accelerate launch
# --cpu, for one, drops the FSDP plugin silently and trains plainly: only the child knows).
FSDP_PROBE = """
import json, sys
sys.path.insert(0, {repo!r})
from reflection_assets.cli import main
code = main(sys.argv[1:])
from accelerate.state import AcceleratorState
state = AcceleratorState._shared_state
plugin = state.get("fsdp_plugin")
seen = {{"distributed_type": str(state.get("distributed_type")), "fsdp_version": getattr(plugin, "fsdp_version", None)}}
print("GPU_CHECK_ACCELERATE " + json.dumps(seen), file=sys.stderr, flush=True)
sys.exit(code)
"""


def step_fsdp2(ctx: Context, cap_end: float) -> dict:
    """One process under accelerate's FSDP2 plugin with the project's config; on --cpu, an honest attempt."""
    probe = ctx.work / "train_probe.py"
    probe.write_text(FSDP_PROBE.format(repo=str(REPO)))
    args = train_args(ctx, "fsdp2", [])
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "deploy" / "accelerate" / "fsdp2.yaml"),
        "--num_processes", "1", "--main_process_port", str(free_port()),
        *(["--cpu"] if ctx.cpu else []),
        str(probe), *args,
    ]  # fmt: skip
    run = run_command(ctx, cmd, remaining(ctx, cap_end))
    figures: dict[str, Any] = {"exit": run.returncode, "wall_seconds": round(run.seconds, 2)}
    seen = [line.split(" ", 1)[1] for line in run.stderr.splitlines() if line.startswith("GPU_CHECK_ACCELERATE ")]
    figures["accelerate"] = json.loads(seen[-1]) if seen else None
    fsdp = bool(seen) and "FSDP" in figures["accelerate"]["distributed_type"]
    if ctx.cpu and not (run.returncode == 0 and fsdp):  # what happened, recorded; FSDP on a CPU is not the target
        if run.returncode == 0:
            figures["summary"] = run.summary()
            reason = (
                "accelerate launch --cpu drops the FSDP plugin (its launch_command takes the FSDP branch only "
                f"without --cpu): the child trained as one plain process, accelerate set up {figures['accelerate']}"
            )
        else:
            reason = f"accelerate launch --cpu with the FSDP2 config failed (exit {run.returncode}): {run.tail(3)}"
        raise Skip(reason[:1000], figures)
    if not expect(figures, "exit_0", run.returncode == 0):
        figures["stderr_tail"] = run.tail()
        return figures
    expect(figures, "fsdp_active", fsdp)
    expect(figures, "fsdp_version_2", bool(seen) and figures["accelerate"]["fsdp_version"] == 2)
    summary = figures["summary"] = run.summary()
    check_summary(figures, summary, "trained", 4)
    return figures


# -- the runner -------------------------------------------------------------------------------------------------

STEP_FUNCTIONS: dict[str, Callable[..., dict]] = {
    "environment": step_environment,
    "bnb_4bit": step_bnb_4bit,
    "scoring": step_scoring,
    "teacher_generation": step_teacher_generation,
    "evaluation": step_evaluation,
    "training_bf16": step_training_bf16,
    "training_qlora": step_training_qlora,
    "fsdp2": step_fsdp2,
}
SUBPROCESS_STEPS = {"training_bf16", "training_qlora", "fsdp2"}  # take the cap's end, to bound their children


def json_safe(value: Any) -> Any:
    """NaN and infinities as null (strict JSON), tuples as lists, anything else as its string."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def write_results(path: Path, ctx: Context, results: list[dict], started: float, finished: bool) -> None:
    document = {
        "mode": ctx.mode,
        "finished": finished,
        "total_seconds": round(time.monotonic() - started, 2),
        "budget_seconds": TOTAL_BUDGET_S[ctx.mode] * ctx.cap_scale,
        "steps": results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(json_safe(document), indent=2) + "\n")
    os.replace(staging, path)


def run_step(ctx: Context, name: str) -> dict:
    # A step gets its own cap, or what is left of the total budget (a skip costs nothing; a real step that
    # finds the budget spent fails on its timeout: a check not run is not a check passed).
    cap = max(1.0, min(STEP_CAPS_S[name][1 if ctx.cpu else 0] * ctx.cap_scale, ctx.deadline - time.monotonic()))
    record: dict[str, Any] = {"step": name, "cap_seconds": round(cap, 1)}
    started = time.perf_counter()
    try:
        with time_cap(cap):
            function = STEP_FUNCTIONS[name]
            figures = function(ctx, time.monotonic() + cap) if name in SUBPROCESS_STEPS else function(ctx)
        passed = all(figures.get("checks", {}).values())
        record.update(status="passed" if passed else "failed", passed=passed, **figures)
        if not passed:
            record["error"] = "checks failed: " + ", ".join(k for k, v in figures["checks"].items() if not v)
    except Skip as reason:
        record.update(status="skipped", passed=False, skipped_reason=str(reason), **reason.figures)
    except (Exception, StepTimeout) as exc:
        record.update(status="failed", passed=False, error=f"{type(exc).__name__}: {exc}"[:2000])
        record["traceback"] = traceback.format_exc().strip().splitlines()[-12:]
    finally:
        with contextlib.suppress(Exception):
            free_memory()
    record["seconds"] = round(time.perf_counter() - started, 2)
    return record


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the one JSON file of results")
    parser.add_argument("--cpu", action="store_true", help="the same steps on the CPU, with small models")
    parser.add_argument("--only", default="", help=f"comma-separated steps of: {', '.join(STEPS)}")
    parser.add_argument("--workdir", type=Path, default=None, help="models, data, checkpoints (default: a temp dir)")
    parser.add_argument(
        "--cap-scale",
        type=float,
        default=1.0,
        help="multiply every step cap and the total budget (a machine shared with other work, e.g. a test suite); "
        "the caps guard against a hung step, not for speed",
    )
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(STEPS)
    unknown = sorted(set(chosen) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}; known: {', '.join(STEPS)}")
    args.steps = [s for s in STEPS if s in chosen]
    if args.cap_scale <= 0:
        parser.error("--cap-scale must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    # Runtime state (the model store's hash memo, checkpoints) stays in the work folder, here and in children.
    os.environ["REFLECTION_DATA_DIR"] = str(work / "data")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # weight-loading and lm-eval bars would flood the log
    if args.cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    mode = "cpu" if args.cpu else "cuda"
    budget = TOTAL_BUDGET_S[mode] * args.cap_scale
    ctx = Context(cpu=args.cpu, device=mode, work=work, deadline=started + budget, cap_scale=args.cap_scale)
    print(f"gpu_check: {mode} mode, steps {', '.join(args.steps)}, work folder {work}", flush=True)
    results: list[dict] = []
    for name in args.steps:
        print(f"[{time.monotonic() - started:6.1f}s] {name} ...", flush=True)
        record = run_step(ctx, name)
        results.append(record)
        write_results(args.out, ctx, results, started, finished=False)
        detail = record.get("skipped_reason") or record.get("error") or ""
        print(
            f"[{time.monotonic() - started:6.1f}s] {name}: {record['status']} in {record['seconds']}s {detail}"[:400],
            flush=True,
        )
    write_results(args.out, ctx, results, started, finished=True)
    failed = [r["step"] for r in results if r["status"] == "failed"]
    print(
        f"gpu_check: {len(results) - len(failed)} of {len(results)} steps passed or skipped; failed: {failed or 'none'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
