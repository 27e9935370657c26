"""Which process of a launched training this is, read from the launcher's environment.

`torchrun` and `accelerate launch` set RANK / LOCAL_RANK / WORLD_SIZE before the script starts, so
these answers exist before any process group does: the checkpoint key (which counts the processes,
since the global batch is per-device batch x processes) and "only the main process writes or
reports" are decided from them without initialising torch.distributed.
"""

from __future__ import annotations

import os
from typing import Any


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def world_size() -> int:
    """Processes training together (1 when not launched by torchrun / accelerate)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def rank() -> int:
    """This process's global rank (0 when not launched)."""
    return _env_int("RANK", 0)


def local_rank() -> int:
    """This process's rank on its machine: the GPU it owns (`cuda:{local_rank}`)."""
    return _env_int("LOCAL_RANK", 0)


def is_main_process() -> bool:
    """The one process that writes the adapter, the card, the marker, and reports to Dagster/MLflow."""
    return rank() == 0


# What `accelerate launch` decides outside the training settings that changes the numbers: the
# parallelism (FSDP, DeepSpeed and their knobs) and the mixed precision, which the config file's
# `mixed_precision` imposes whatever `precision` says.
LAUNCHER_VARIABLES = (
    "ACCELERATE_USE_FSDP",
    "FSDP_VERSION",
    "FSDP_OFFLOAD_PARAMS",
    "ACCELERATE_USE_DEEPSPEED",
    "ACCELERATE_DEEPSPEED_ZERO_STAGE",
    "ACCELERATE_MIXED_PRECISION",
)


def launch_fingerprint() -> dict[str, Any]:
    """The launch's part of the checkpoint key: the process count past one and the launcher's own
    choices above (left out when not set or off, so a plain one-process run's key is what it was)."""
    found: dict[str, Any] = {name: os.environ[name] for name in LAUNCHER_VARIABLES if os.environ.get(name)}
    found = {k: v for k, v in found.items() if v.lower() not in ("false", "no", "0")}
    if world_size() > 1:
        found["processes"] = world_size()
    return found


def fsdp_requested() -> bool:
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes")


def sharded_training(args: Any) -> bool:
    """FSDP or DeepSpeed: the launcher's plugin places (and shards) the weights, so the load must not.

    `accelerate launch --config_file fsdp2.yaml` says so through ACCELERATE_USE_FSDP; a DeepSpeed
    config gives the training arguments a `deepspeed_plugin`.
    """
    return bool(fsdp_requested() or getattr(args, "fsdp", None) or getattr(args, "deepspeed_plugin", None) is not None)


def zero3_reentrant_checkpointing(args: Any) -> None:
    """PEFT under DeepSpeed ZeRO-3 needs reentrant activation checkpointing.

    TRL 1.16 asks for it by writing `gradient_checkpointing_kwargs` after the arguments are built,
    but transformers 5.24 reads only `activation_checkpointing_kwargs` (the old name is mirrored
    once, in `__post_init__`), so TRL's request is lost. Set the name transformers reads, and
    alias the old one to the same dict so TRL sees the request as already made.
    """
    plugin = getattr(args, "deepspeed_plugin", None)
    checkpointing = getattr(args, "activation_checkpointing", False)
    if plugin is None or getattr(plugin, "zero_stage", None) != 3 or not checkpointing:
        return
    kwargs = dict(getattr(args, "activation_checkpointing_kwargs", None) or {})
    kwargs["use_reentrant"] = True
    args.activation_checkpointing_kwargs = kwargs
    args.gradient_checkpointing_kwargs = kwargs
