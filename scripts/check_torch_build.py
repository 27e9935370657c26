"""`make install`'s last check: a GPU machine must not end up with a CPU-only torch.

pip quietly takes a `+cpu` wheel when an index or a local file offers one, and training then runs
on the CPU of an 8-GPU node without a word. Stop the install with the fix instead.
"""

from __future__ import annotations

import shutil
import subprocess
import sys


def gpus_listed() -> bool:
    """Whether the NVIDIA driver lists a GPU here (`nvidia-smi -L`)."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listed.returncode == 0 and "GPU" in listed.stdout


def problem(torch_version: str, cuda_version: str | None, gpus: bool) -> str | None:
    """What is wrong with this torch build on this machine, or None."""
    if gpus and cuda_version is None:
        return (
            f"this machine has an NVIDIA GPU but torch {torch_version} is a CPU-only build. Reinstall a CUDA "
            "build: rm -rf .venv && make install TORCH=torch==<version> "
            "TORCH_INDEX=https://download.pytorch.org/whl/cu128 (pick the CUDA version your driver supports)"
        )
    return None


def main() -> int:
    import torch

    message = problem(torch.__version__, torch.version.cuda, gpus_listed())
    if message:
        print(f"error: {message}", file=sys.stderr)
        return 1
    where = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only"
    print(f"torch {torch.__version__} ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
