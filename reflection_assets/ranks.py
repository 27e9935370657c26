"""Which process of a launch this is, read from the launcher's environment.

`torchrun` and `accelerate launch` set RANK / LOCAL_RANK / WORLD_SIZE before the script starts, so
these answers exist before any process group does: the device a process owns, the checkpoint key
(which counts the processes, since the global batch is per-device batch x processes) and "only the
main process writes or reports" are decided from them without initialising torch.distributed.
"""

from __future__ import annotations

import os


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
