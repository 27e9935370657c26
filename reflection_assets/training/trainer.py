"""`train_lora`: one readable function around TRL's `SFTTrainer`, as in TRL's and alignment-handbook's scripts.

Keyed by content (base model, rows, settings, numeric libraries): a finished adapter with the same
key is reused without loading the model; an interrupted one resumes from its last complete Trainer
checkpoint (same seed, output folder and row order: bit-exact). TRL 1.16 / transformers 5.24 traps
handled here: `bf16=False, use_cpu=True` for fp32 (SFTConfig defaults to bf16), `logging_steps=1`
(10 hides a small arm's curve), warmup as a fraction or a count, activation checkpointing on CUDA
only, trained rows read from the trainer's own dataset (it drops rows whose prompt fills
`max_length`), resume with the last checkpoint or None, "finished" marked last.
"""

from __future__ import annotations

import logging
import math
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reflection_assets.model_store import timed_load
from reflection_assets.ranks import is_main_process, world_size
from reflection_assets.schema import Pair
from reflection_assets.training.checkpoints import CheckpointLayout, checkpoint_key, library_versions, model_card
from reflection_assets.training.dataset import TrainingExample, resolve_template, training_examples
from reflection_assets.training.distributed import (
    fsdp_requested,
    launch_fingerprint,
    sharded_training,
    zero3_reentrant_checkpointing,
)
from reflection_assets.training.losses import describe_losses, loss_windows
from reflection_assets.training.settings import LoraSettings
from reflection_assets.training.statuses import REUSED, SKIPPED, TRAINED

if TYPE_CHECKING:
    from reflection_assets.training.shared_checkpoints import CheckpointMirror

LogFn = Callable[[str], None]
STEP_METRICS = ("loss", "learning_rate", "grad_norm", "tokens_per_second", "step_seconds", "peak_memory_mb")


@dataclass
class TrainingOutcome:
    """What one call did and the numbers of the adapter it leaves (NaN losses when skipped)."""

    status: str
    key: str
    base_model: str
    base_fingerprint: str
    template: str
    rows_given: int
    rows_trained: int
    adapter_path: str = ""
    skipped_reason: str = ""
    trained_row_ids: list[str] = field(default_factory=list)
    first_loss: float = math.nan  # mean loss of the first epoch (or half; NaN for a run too short): training.losses
    final_loss: float = math.nan  # mean loss of the last epoch (or half; of the whole run when too short)
    loss_window: str = ""  # what those means are over: "epoch", "half" or "run"
    steps: int = 0
    tokens_seen: int = 0
    train_seconds: float = 0.0
    resumed_from_step: int = 0
    log_history: list[dict] = field(default_factory=list)

    def loss_curve(self) -> tuple[list[int], list[float]]:
        """(step, loss) of every logged training step, in order."""
        points = [(int(e["step"]), float(e["loss"])) for e in self.log_history if "loss" in e]
        return [s for s, _ in points], [v for _, v in points]


def silence_bitsandbytes() -> None:
    """Every peft import makes bitsandbytes log a CPU 4-bit kernel warning that concerns nothing here."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def requested_device(settings: LoraSettings) -> str:
    """The device asked for; `auto` as the model store resolves it (`cuda:{LOCAL_RANK}` under a
    launcher, never plain `cuda`, which is GPU 0 for every rank)."""
    from reflection_assets.model_store import pick_device

    return pick_device(settings.device)


def train_lora(
    pairs: Sequence[Pair],
    base_model: str,
    settings: LoraSettings,
    root: Path,
    name: str,
    *,
    template: str | None = None,
    callbacks: Sequence[Any] = (),
    log: LogFn = print,
    mirror: CheckpointMirror | None = None,
) -> TrainingOutcome:
    """Train (or reuse, or resume) the LoRA adapter of `pairs` on `base_model` under `root/name/<key>/`.

    With a `mirror` (the shared deployment's object store) the key is held across nodes while it is decided,
    a finished copy there is reused, and a new adapter is published; `adapter_path` is then its URI.
    """
    from reflection_assets.model_store import load_tokenizer, local_dir

    silence_bitsandbytes()
    if not is_main_process():
        log = _quiet  # one voice per run: the main process speaks for every rank
    _, fingerprint = local_dir(base_model)
    tokenizer = load_tokenizer(base_model)
    template_name = resolve_template(tokenizer, template)
    examples = training_examples(pairs, tokenizer, template_name)
    key = checkpoint_key(fingerprint, examples, settings, template_name, library_versions(), launch_fingerprint())
    layout = CheckpointLayout.under(root, name, key)
    common = dict(
        key=key, base_model=base_model, base_fingerprint=fingerprint, template=template_name, rows_given=len(pairs)
    )
    if mirror is None:
        return reuse_or_train(pairs, base_model, settings, layout, common, tokenizer, examples, name, callbacks, log)
    with mirror.hold(layout, log):
        outcome = reuse_or_train(pairs, base_model, settings, layout, common, tokenizer, examples, name, callbacks, log)
        if outcome.status == SKIPPED:
            return outcome
        adapter = mirror.published(layout)
        log(f"{name}: adapter {key} at {adapter}")
        return replace(outcome, adapter_path=adapter)


def reuse_or_train(
    pairs: Sequence[Pair],
    base_model: str,
    settings: LoraSettings,
    layout: CheckpointLayout,
    common: dict,
    tokenizer: Any,
    examples: list[TrainingExample],
    name: str,
    callbacks: Sequence[Any],
    log: LogFn,
) -> TrainingOutcome:
    """The finished adapter in `layout` when there is one; else a reasoned skip, or a (resumed) training run."""
    key = common["key"]
    if layout.is_finished():
        log(f"{name}: finished adapter {key} found, reused (nothing trained)")
        return reused_outcome(layout, common)
    if len(examples) < settings.min_rows:
        reason = (
            f"{len(pairs)} rows given, {len(examples)} with a non-empty answer: fewer than min_rows={settings.min_rows}"
        )
        log(f"{name}: skipped, {reason}")
        return TrainingOutcome(status=SKIPPED, rows_trained=0, skipped_reason=reason, **common)
    if settings.packing:  # packing skips TRL's own filter: leave out rows whose prompt fills max_length here
        examples = [e for e in examples if prompt_length(tokenizer, e) < settings.max_length]

    # The training arguments come first: building them sets up the distributed state (the process
    # group, this rank's device), which the load needs for FSDP's cpu_ram_efficient_loading and
    # ZeRO-3's zero3_init_flag to take effect, and for each rank to load onto its own GPU.
    args = sft_config(settings, layout)
    device = str(args.device)
    model = load_base(base_model, settings, args)
    trainer = build_trainer(model, tokenizer, examples, settings, args, device, [*callbacks, progress_callback(log)])
    trained_ids = trained_row_ids(trainer, examples)
    if len(trained_ids) < settings.min_rows:
        reason = (
            f"{len(trained_ids)} of {len(pairs)} rows left after the trainer's filtering (prompt alone fills "
            f"max_length={settings.max_length} or empty answer): fewer than min_rows={settings.min_rows}"
        )
        log(f"{name}: skipped, {reason}")
        return TrainingOutcome(status=SKIPPED, rows_trained=len(trained_ids), skipped_reason=reason, **common)
    return run_training(trainer, tokenizer, layout, common, settings, name, trained_ids, log)


def run_training(
    trainer: Any,
    tokenizer: Any,
    layout: CheckpointLayout,
    common: dict,
    settings: LoraSettings,
    name: str,
    trained_ids: list[str],
    log: LogFn,
) -> TrainingOutcome:
    """Train (from the last Trainer checkpoint of an interrupted run, if any), then write and describe the adapter."""
    resume = layout.last_trainer_checkpoint()
    world = trainer.args.world_size
    processes = f" x {world} processes" if world > 1 else ""
    log(
        f"{name}: training {len(trained_ids)} rows on {trainer.args.device}{processes} ({common['key']})"
        + (f", resuming from {resume}" if resume else "")
    )
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    outcome = finish(trainer, tokenizer, layout, common, settings, name, trained_ids, seconds, resume)
    log(
        f"{name}: {outcome.steps} steps, "
        f"{describe_losses(outcome.first_loss, outcome.final_loss, outcome.loss_window)} in {seconds:.1f}s"
    )
    return outcome


def prompt_length(tokenizer: Any, example: TrainingExample) -> int:
    """Tokens of the prompt alone, as TRL counts them (with the generation prompt under a chat template)."""
    from reflection_assets.scoring.templates import _as_ids

    if isinstance(example.prompt, list):
        return len(_as_ids(tokenizer.apply_chat_template(example.prompt, add_generation_prompt=True, tokenize=True)))
    return len(tokenizer(example.prompt)["input_ids"])


def load_base(base_model: str, settings: LoraSettings, args: Any) -> Any:
    """The base weights for training, loaded after `args` set up the distributed state.

    Plain and DDP runs load straight onto this rank's device (`args.device`, `cuda:{LOCAL_RANK}`);
    FSDP and ZeRO-3 runs load on the CPU (or the meta device on ranks > 0) and let the launcher's
    plugin shard them. fp32 on a CPU (bf16 there is autocast), bf16 on CUDA, 4-bit nf4 (QLoRA) when
    asked, on this rank's GPU. Weights as safetensors only, no remote code.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from reflection_assets.devices import attention_implementation
    from reflection_assets.model_store import local_dir

    device = args.device
    on_cuda = device.type == "cuda"
    if settings.load_in_4bit and not on_cuda:
        raise ValueError("load_in_4bit (QLoRA) needs a CUDA device; on a CPU train without it")
    dtype = torch.bfloat16 if on_cuda and args.bf16 else torch.float32
    location, _ = local_dir(base_model)
    kwargs: dict[str, Any] = dict(
        dtype=dtype, attn_implementation=attention_implementation(str(device), dtype), use_safetensors=True
    )
    if settings.load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": str(device)}  # this rank's GPU, not GPU 0
    elif not sharded_training(args):
        kwargs["device_map"] = {"": str(device)}
    with timed_load(f"{location} (training)"):
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    if settings.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.activation_checkpointing)
    return model


def activation_checkpointing(settings: LoraSettings, device: str) -> bool:
    """On for CUDA (memory), off on CPU (no memory pressure at this size, ~30% slower)."""
    if settings.activation_checkpointing is not None:
        return settings.activation_checkpointing
    return device.startswith("cuda")


def use_bf16(settings: LoraSettings, device: str) -> bool:
    """bf16 where asked, or by default on a GPU that supports it (not on V100/T4-class cards: fp32 there)."""
    from reflection_assets.devices import cuda_bf16_supported

    on_cuda = device.startswith("cuda")
    if settings.precision == "bf16" and on_cuda and not cuda_bf16_supported():
        raise ValueError("precision=bf16 asked, but this GPU does not support bf16: use precision=fp32")
    if settings.precision == "auto":
        return on_cuda and cuda_bf16_supported()
    return settings.precision == "bf16"


def sft_config(settings: LoraSettings, layout: CheckpointLayout) -> Any:
    """The training arguments; building them (and reading `.device`) sets up the distributed state."""
    from trl import SFTConfig

    device = requested_device(settings)
    on_cuda = device.startswith("cuda")
    if fsdp_requested() and not on_cuda:
        # accelerate 1.15 turns FSDP on only for GPU-like process groups: on CPUs it would quietly
        # train as plain DDP (under the config's mixed precision) while the key said FSDP.
        raise ValueError(
            "an FSDP accelerate config needs GPUs (accelerate does not shard CPU processes); "
            "on CPUs train with num_processes alone (torchrun, DDP)"
        )
    if on_cuda and ":" in device and world_size() == 1 and device != "cuda:0":
        raise ValueError(
            f"device={device}: one process trains on the first visible GPU; pick it with "
            f"CUDA_VISIBLE_DEVICES={device.split(':')[1]} (several GPUs: num_processes)"
        )
    config = SFTConfig(
        output_dir=str(layout.trainer_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup if settings.warmup < 1 else int(settings.warmup),
        max_length=settings.max_length,
        packing=settings.packing,
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=use_bf16(settings, device),
        fp16=False,
        use_cpu=not on_cuda,
        # kbit preparation turns checkpointing on itself; the trainer must not wrap it again
        activation_checkpointing=activation_checkpointing(settings, device) and not settings.load_in_4bit,
        logging_steps=1,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=2,  # the newest may be half-written when killed; the one before it is complete
        include_num_input_tokens_seen="non_padding",
        report_to="none",  # MLflow is logged by the caller from log_history once, so a resume logs no step twice
        disable_tqdm=True,
        dataloader_num_workers=0,
        ddp_timeout=settings.collective_timeout,  # a rank that hangs fails the others after this, not never
    )
    _ = config.device  # set up the process group and this rank's device now, before any weights load
    if on_cuda and config.world_size == 1:
        # One process trains on one GPU: without this, Trainer wraps the model in DataParallel over
        # every visible GPU. Several GPUs train through a launcher (num_processes), one rank each.
        config._n_gpu = 1
    zero3_reentrant_checkpointing(config)
    return config


def lora_config(settings: LoraSettings) -> Any:
    from peft import LoraConfig

    targets: str | list[str] = (
        "all-linear" if settings.target_modules == ("all-linear",) else list(settings.target_modules)
    )
    # LoRA only (no modules_to_save, no new tokens): PEFT, vLLM and lm-eval load the adapter as it is.
    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )


def build_trainer(
    model: Any,
    tokenizer: Any,
    examples: Sequence[TrainingExample],
    settings: LoraSettings,
    args: Any,
    device: str,
    callbacks: Sequence[Any],
) -> Any:
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar
    from transformers import PrinterCallback
    from trl import SFTTrainer

    disable_progress_bar()  # one bar per map() floods the run log; the step log says how far training is
    dataset = Dataset.from_list([e.as_record() for e in examples])
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(settings),
        callbacks=[step_stats_callback(device), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # steps go to the caller's log and MLflow, not stdout
    return trainer


def trained_row_ids(trainer: Any, examples: Sequence[TrainingExample]) -> list[str]:
    """Ids of the rows the trainer kept (it drops rows left with no completion token after truncation).

    With packing the rows are merged into sequences and the id column is gone; there the rows given
    were already filtered the same way (see `train_lora`).
    """
    dataset = trainer.train_dataset
    if "row_id" in dataset.column_names:
        return sorted(set(dataset["row_id"]))
    return sorted({e.row_id for e in examples})


def step_stats_callback(device: str) -> Any:
    """A callback adding step time, tokens/s and peak memory to every logged step.

    It writes into `state.log_history` (what checkpoints store), so a resumed run keeps them.
    """
    from transformers import TrainerCallback

    class StepStats(TrainerCallback):
        def __init__(self) -> None:
            self.step_started = 0.0
            self.step_seconds = 0.0
            self.last_log_time: float | None = None
            self.last_tokens = 0

        def on_step_begin(self, args, state, control, **kwargs):
            self.step_started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.step_seconds = time.perf_counter() - self.step_started

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.log_history or "loss" not in state.log_history[-1]:
                return
            now = time.perf_counter()
            entry = state.log_history[-1]
            entry["step_seconds"] = round(self.step_seconds, 4)
            entry["peak_memory_mb"] = round(peak_memory_mb(device), 1)
            tokens = int(state.num_input_tokens_seen or 0)
            if self.last_log_time is not None and now > self.last_log_time and tokens >= self.last_tokens:
                entry["tokens_per_second"] = round((tokens - self.last_tokens) / (now - self.last_log_time), 2)
            self.last_log_time, self.last_tokens = now, tokens

    return StepStats()


def progress_callback(log: LogFn, every_seconds: float = 10.0) -> Any:
    """A callback logging progress (step of steps, loss, steps/s, ETA) on the main process: at the
    first step, then at most every `every_seconds`, and at the last step."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.started: float | None = None
            self.first_step = 0
            self.last_logged = -math.inf

        def on_train_begin(self, args, state, control, **kwargs):
            self.started, self.first_step = time.perf_counter(), state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or self.started is None or "loss" not in (logs or {}):
                return
            now = time.perf_counter()
            done, total = state.global_step, state.max_steps
            if now - self.last_logged < every_seconds and done not in (self.first_step + 1, total):
                return
            self.last_logged = now
            rate = (done - self.first_step) / max(now - self.started, 1e-9)
            eta = (total - done) / rate if rate > 0 else math.nan
            log(f"step {done}/{total}, loss {float(logs['loss']):.4f}, {rate:.2f} steps/s, ETA {eta:.0f}s")

    return Progress()


def _quiet(message: str) -> None:
    """The log of a rank other than the main one."""


def peak_memory_mb(device: str) -> float:
    """Peak GPU memory allocated, or on CPU the process's peak resident set."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def finish(
    trainer: Any,
    tokenizer: Any,
    layout: CheckpointLayout,
    common: dict,
    settings: LoraSettings,
    name: str,
    trained_ids: list[str],
    seconds: float,
    resume: str | None,
) -> TrainingOutcome:
    """Save the adapter, tokenizer, card, arguments and numbers; mark the run finished last."""
    history = [dict(e) for e in trainer.state.log_history]
    losses = loss_windows(history)
    outcome = TrainingOutcome(
        status=TRAINED,
        adapter_path=str(layout.adapter_dir),
        rows_trained=len(trained_ids),
        trained_row_ids=trained_ids,
        first_loss=losses.first,
        final_loss=losses.final,
        loss_window=losses.window,
        steps=int(trainer.state.global_step),
        tokens_seen=int(trainer.state.num_input_tokens_seen or 0),
        train_seconds=seconds,
        resumed_from_step=int(Path(resume).name.split("-")[-1]) if resume else 0,
        log_history=history,
        **common,
    )
    # save_model gathers sharded weights under FSDP / ZeRO-3 (every rank takes part) and writes only
    # on the main process; everything else below is the main process's alone.
    trainer.save_model(str(layout.adapter_dir))
    if trainer.is_world_process_zero():
        (layout.adapter_dir / "training_args.bin").unlink(missing_ok=True)  # pickled; the JSON says the same
        tokenizer.save_pretrained(str(layout.adapter_dir))
        (layout.adapter_dir / "training_args.json").write_text(trainer.args.to_json_string())
        (layout.adapter_dir / "README.md").write_text(
            model_card(
                base_model=common["base_model"],
                base_fingerprint=common["base_fingerprint"],
                name=name,
                key=common["key"],
                template=common["template"],
                settings=settings,
                rows_trained=outcome.rows_trained,
                steps=outcome.steps,
                losses=describe_losses(outcome.first_loss, outcome.final_loss, outcome.loss_window),
            )
        )
        layout.write_result({**asdict(outcome), "settings": settings.as_params()})
        layout.mark_finished()
    # No rank returns (to merge, report or exit) before the main process has marked the run finished.
    trainer.accelerator.wait_for_everyone()
    return outcome


def reused_outcome(layout: CheckpointLayout, common: dict) -> TrainingOutcome:
    """The stored numbers of a finished run, marked reused (the train time is the original run's)."""
    stored = layout.read_result()
    known = set(TrainingOutcome.__dataclass_fields__)
    values = {k: v for k, v in stored.items() if k in known}
    values.update(common, status=REUSED, adapter_path=str(layout.adapter_dir))
    return TrainingOutcome(**values)
