"""Every knob of one LoRA run, in one frozen object: the asset's config, the CLI and the key read it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from reflection_assets.documented import documented

Precision = Literal["auto", "fp32", "bf16"]

# Knobs that change neither the adapter nor the loss curve: left out of the checkpoint key
# (the device enters the key as its kind, cpu | cuda).
NOT_IN_KEY = ("save_steps", "min_rows", "device", "collective_timeout")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA + SFT hyper-parameters, devices and precision.

    `warmup` below 1 is a fraction of the steps, from 1 up a step count (transformers 5 reads
    `warmup_steps` that way; `warmup_ratio` is gone). `precision="auto"` is fp32 on a CPU and bf16 on
    CUDA; `bf16` on a CPU is autocast (faster where the CPU has AMX, numerically different).
    """

    rank: int = documented(8, "LoRA rank r")
    alpha: int = documented(16, "LoRA alpha (the update is scaled by alpha / r)")
    dropout: float = documented(0.05, "LoRA dropout (0 for runs compared step by step)")
    target_modules: tuple[str, ...] = documented(
        ("all-linear",), "module names, comma-separated, or all-linear (every linear projection but lm_head)"
    )
    epochs: float = documented(2.0, "passes over the rows")
    learning_rate: float = documented(2e-4, "peak learning rate")
    warmup: float = documented(0.1, "below 1: a fraction of the steps; from 1 up: a step count")
    lr_scheduler: str = documented("linear", "transformers scheduler name: linear, cosine, constant, ...")
    batch_size: int = documented(
        8, "rows per device per step (the global batch is this x processes x gradient_accumulation)"
    )
    gradient_accumulation: int = documented(1, "steps whose gradients are summed before each optimizer step")
    max_length: int = documented(
        512, "tokens per row (prompt + answer); rows whose prompt alone fills it are dropped"
    )
    packing: bool = documented(False, "padding-free packing of rows into sequences (exact with SDPA)")
    seed: int = documented(0, "seed of the initialisation and the row order")
    precision: Precision = documented(
        "auto", "auto: fp32 on CPU, bf16 on a GPU that supports it (else fp32); bf16 on a CPU is autocast"
    )
    load_in_4bit: bool = documented(False, "QLoRA: the base in nf4 with double quantization (CUDA only)")
    activation_checkpointing: bool | None = documented(
        None, "recompute activations in the backward pass, time for memory (unset: on for CUDA, off on CPU, "
        "where it is slower for no gain)"
    )
    device: str = documented(
        "auto", "auto, cpu, cuda or cuda:N (one process trains on one GPU, the first visible for cuda; more GPUs: "
        "num_processes)"
    )
    max_steps: int = documented(-1, "> 0 caps the run at this many optimizer steps; -1 trains `epochs`")
    save_steps: int = documented(
        5, "a resumable Trainer checkpoint every N optimizer steps (what an interrupted run resumes from)"
    )
    min_rows: int = documented(4, "fewer rows than this after the trainer's filtering: a reasoned skip")
    collective_timeout: int = documented(
        1800, "seconds a process waits for the others in a collective before the run fails"
    )

    def __post_init__(self) -> None:
        problems = []
        if self.rank < 1 or self.alpha < 1:
            problems.append("rank and alpha must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            problems.append("dropout must be in [0, 1)")
        if self.epochs <= 0 and self.max_steps <= 0:
            problems.append("epochs must be > 0 (or max_steps set)")
        if self.learning_rate <= 0:
            problems.append("learning_rate must be > 0")
        if self.warmup < 0:
            problems.append("warmup must be >= 0 (a fraction below 1, a step count from 1 up)")
        if self.batch_size < 1 or self.gradient_accumulation < 1:
            problems.append("batch_size and gradient_accumulation must be >= 1")
        if self.max_length < 8:
            problems.append("max_length must be >= 8")
        if self.precision not in ("auto", "fp32", "bf16"):
            problems.append(f"precision must be auto, fp32 or bf16, not {self.precision!r}")
        if self.save_steps < 1:
            problems.append("save_steps must be >= 1")
        if self.min_rows < 1:
            problems.append("min_rows must be >= 1")
        if self.collective_timeout < 1:
            problems.append("collective_timeout must be >= 1 second")
        if not self.target_modules:
            problems.append("target_modules must name at least one module (or 'all-linear')")
        if problems:
            raise ValueError("; ".join(problems))

    def key_fields(self) -> dict:
        """What the checkpoint key hashes: everything that changes the numbers."""
        fields = asdict(self)
        fields["target_modules"] = list(self.target_modules)
        for name in NOT_IN_KEY:
            fields.pop(name)
        return fields

    def as_params(self) -> dict:
        """Flat values for MLflow params and the model card."""
        return {k: (",".join(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
