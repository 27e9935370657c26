"""What a launcher decides about a training beyond its settings: parallelism, precision, sharding.

The ranks themselves (which process this is) are `reflection_assets.ranks`'s.
"""

from __future__ import annotations

import os
from typing import Any

from reflection_assets.ranks import world_size

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
