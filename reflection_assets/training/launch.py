"""Training across processes: the launch command, the rows it reads, and what each rank reports.

`lora_checkpoint` with `num_processes > 1` runs the same `reflection-tuning train` entry point a user
runs from a shell, under `torchrun` (DDP) or `accelerate launch --config_file ...` (FSDP2, ZeRO-3),
one process per GPU. Both sides of the protocol live here:

- the launching side writes the arm's rows as JSONL (what `train --data` reads, so the key matches
  the in-process one) and builds the command;
- every rank writes a small report into `REFLECTION_TRAIN_REPORT_DIR` when it starts, fails or
  finishes, so a failed launch names the rank and its error, and a rank that died without a word
  (SIGKILL, the OOM killer) is named as such. The launcher stops the other ranks (SIGTERM) when one
  dies; they say so in their reports, which keeps them apart from the rank that caused it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reflection_assets.dataclass_args import dataclass_argv
from reflection_assets.ranks import rank
from reflection_assets.schema import Pair
from reflection_assets.training.settings import LoraSettings

REPORT_DIR_ENV = "REFLECTION_TRAIN_REPORT_DIR"
TRAIN_ENTRY = ("-m", "reflection_assets.cli", "train")
USER_ERROR_EXIT = 2  # what `reflection-tuning train` returns for a user's mistake (bad rows, bad settings)


@dataclass(frozen=True)
class Launch:
    """How to start the processes: `torchrun` with DDP, or `accelerate launch` with a config file."""

    num_processes: int
    accelerate_config: str | None = None
    python: str = sys.executable

    def __post_init__(self) -> None:
        if self.num_processes < 1:
            raise ValueError("num_processes must be >= 1")
        if self.accelerate_config and not Path(self.accelerate_config).is_file():
            raise ValueError(f"accelerate_config {self.accelerate_config}: no such file")

    def command(self, train_args: Sequence[str]) -> list[str]:
        """The launcher's command line around `reflection-tuning train <train_args>`, in this interpreter."""
        if self.accelerate_config:
            launcher = [
                self.python, "-m", "accelerate.commands.launch",
                "--config_file", str(Path(self.accelerate_config).resolve()),
                "--num_processes", str(self.num_processes),
            ]  # fmt: skip
        else:
            # --standalone: a rendezvous on a free local port, so two launches on one machine never collide
            launcher = [self.python, "-m", "torch.distributed.run", "--standalone"]
            launcher += ["--nproc-per-node", str(self.num_processes)]
        return [*launcher, *TRAIN_ENTRY, *train_args]


def settings_arguments(settings: LoraSettings) -> list[str]:
    """`reflection-tuning train` flags that rebuild exactly `settings` (the key depends on every value)."""
    return dataclass_argv(settings)  # the same field-to-flag rules the command parses with


def pair_record(pair: Pair) -> dict:
    """One row as `reflection-tuning train --data` reads it back (the same Pair, id included)."""
    return {
        "id": pair.row_id,
        "instruction": pair.instruction,
        "input": pair.input,
        "output": pair.output,
        "system": pair.system,
        "history": [{"role": t.role, "content": t.content} for t in pair.history],
    }


def write_pairs(pairs: Sequence[Pair], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for pair in pairs:
            handle.write(json.dumps(pair_record(pair), ensure_ascii=False) + "\n")
    return path


# -- each rank's report -------------------------------------------------------------------------


class RankReport:
    """What this rank tells the launching step; does nothing outside a launch (no report folder)."""

    def __init__(self, folder: str | None = None) -> None:
        folder = folder if folder is not None else os.environ.get(REPORT_DIR_ENV)
        self.folder = Path(folder) if folder else None
        self.rank = rank()

    def _write(self, kind: str, values: dict) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"rank-{self.rank}.{kind}.json"
        staging = path.with_name(f".{path.name}.tmp")
        staging.write_text(json.dumps({"rank": self.rank, "pid": os.getpid(), "host": socket.gethostname(), **values}))
        os.replace(staging, path)

    def started(self) -> None:
        self._write("started", {})
        if self.folder is not None:
            signal.signal(signal.SIGTERM, self._stopped_by_launcher)

    def _stopped_by_launcher(self, signum, frame) -> None:  # noqa: ANN001 - a signal handler
        self._write("stopped", {"reason": "stopped by the launcher (SIGTERM), after another rank failed"})
        raise SystemExit(128 + signum)

    def failed(self, error: BaseException | str, *, user_error: bool = False) -> None:
        if isinstance(error, BaseException):
            text = f"{type(error).__name__}: {error}"
            tail = "".join(traceback.format_exception(error)[-3:])
        else:
            text, tail = error, ""
        self._write("failed", {"error": text, "traceback_tail": tail[-2000:], "user_error": user_error})

    def finished(self) -> None:
        self._write("finished", {})


@dataclass(frozen=True)
class LaunchFailure:
    """Why a launch failed, rank by rank, and whether it was the user's mistake (not worth a retry)."""

    reasons: list[str]
    user_error: bool

    def message(self) -> str:
        return "; ".join(self.reasons)


def launch_failure(folder: Path, processes: int, exit_code: int | None = None) -> LaunchFailure:
    """Read the ranks' reports after a failed launch: who failed with what, who died without a word."""

    def read(path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    reasons, stopped, user_error, died = [], [], False, False
    for r in range(processes):
        failed = read(folder / f"rank-{r}.failed.json")
        started = read(folder / f"rank-{r}.started.json")
        if failed is not None:
            reasons.append(f"rank {r} failed: {failed.get('error', 'unknown error')}")
            user_error = user_error or bool(failed.get("user_error"))
        elif (folder / f"rank-{r}.stopped.json").is_file():
            stopped.append(r)
        elif started is None:
            died = True
            reasons.append(f"rank {r} never started")
        elif not (folder / f"rank-{r}.finished.json").is_file():
            died = True
            reasons.append(
                f"rank {r} (pid {started.get('pid')}) died without a report: killed (SIGKILL, the out-of-memory "
                "killer) or crashed in native code"
            )
    if stopped:
        reasons.append(f"rank(s) {', '.join(map(str, stopped))} stopped by the launcher after that")
    if not reasons:
        reasons.append(f"the launcher exited with code {exit_code} and no rank reported an error")
    return LaunchFailure(reasons, user_error and not died)
