"""lm-evaluation-harness on the loaded `PeftModel`: the base and each adapter through one `HFLM`.

A served student runs the same tasks through lm-eval's `local-completions` model
(`reflection_assets.served.evaluation`); both read their samples with `evaluate_lm`.

Offline, lm-eval runs tasks defined locally: the project ships `tasks/reflection_arithmetic.yaml`
for its generated arithmetic suite. lm-eval 0.4.13 resolves `data_files` against the working
directory, so the YAML is copied next to the data with an absolute path at run time, and the
`TaskManager` (4-5 s to build) is built once for every model. Other tasks (gsm8k, ifeval, mmlu)
run by name when their data is reachable.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflection_assets.evaluation.suites import EvalItem

TASK_DIR = Path(__file__).resolve().parent / "tasks"
ARITHMETIC_TASK = "reflection_arithmetic"
DATA_PLACEHOLDER = "DATA_FILES"


@dataclass(frozen=True)
class HarnessSample:
    task: str
    doc_index: int
    prompt: str
    response: str  # what the model wrote
    output: str  # what the task's filter extracted from it (the scored answer)
    score: float


def write_arithmetic_task(items: Sequence[EvalItem], folder: Path) -> Path:
    """The shipped task YAML and its data, with the data path made absolute; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    data = (folder / f"{ARITHMETIC_TASK}.jsonl").resolve()
    data.write_text("".join(json.dumps({"question": i.instruction, "answer": i.reference}) + "\n" for i in items))
    template = (TASK_DIR / f"{ARITHMETIC_TASK}.yaml").read_text()
    (folder / f"{ARITHMETIC_TASK}.yaml").write_text(template.replace(DATA_PLACEHOLDER, json.dumps(str(data))))
    return folder


@contextlib.contextmanager
def adapter_active(model: Any, adapter: str | None) -> Iterator[None]:
    """Route the PeftModel through one adapter, or through none (the base) for the duration."""
    if adapter is None:
        if hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                yield
        else:
            yield
        return
    model.set_adapter(adapter)
    yield


def run_harness(
    model: Any,
    tokenizer: Any,
    adapters: Sequence[str | None],
    tasks: Sequence[str],
    include_path: Path,
    limit: int | None = None,
    batch_size: int = 16,
    system_instruction: str | None = None,
) -> dict[str | None, list[HarnessSample]]:
    """Per adapter (None = base), every sample of every task with its prompt, output and score."""
    from lm_eval.models.huggingface import HFLM

    manager = task_manager(include_path)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    chat = bool(getattr(tokenizer, "chat_template", None))
    out: dict[str | None, list[HarnessSample]] = {}
    for adapter in adapters:
        with adapter_active(model, adapter):
            out[adapter] = evaluate_lm(lm, tasks, manager, chat, limit, system_instruction)
    return out


def task_manager(include_path: Path) -> Any:
    """lm-eval's task index with the local tasks (slow to build: once per harness run)."""
    from lm_eval.tasks import TaskManager

    harness_log = logging.getLogger("lm_eval")  # a caller that quieted it further keeps its level
    harness_log.setLevel(max(harness_log.getEffectiveLevel(), logging.WARNING))
    return TaskManager(include_path=str(include_path))


def evaluate_lm(
    lm: Any, tasks: Sequence[str], manager: Any, chat: bool, limit: int | None, system_instruction: str | None
) -> list[HarnessSample]:
    """Every sample of every task for one lm-eval model (in-process or served: the same settings)."""
    from lm_eval import simple_evaluate

    result = simple_evaluate(
        model=lm,
        tasks=list(tasks),
        task_manager=manager,
        limit=limit,
        log_samples=True,
        apply_chat_template=chat,
        system_instruction=system_instruction,
        bootstrap_iters=0,
        random_seed=0,
        numpy_random_seed=0,
        torch_random_seed=0,
        fewshot_random_seed=0,
    )
    return [
        HarnessSample(
            task,
            int(s["doc_id"]),
            _first(s.get("arguments")),
            _first(s.get("resps")),
            _first(s.get("filtered_resps")),
            float(s["exact_match"]),
        )
        for task, samples in result["samples"].items()
        for s in samples
    ]


def _first(value: Any) -> str:
    """lm-eval nests per-sample values in lists (arguments: [[prompt, kwargs]], resps: [[text]])."""
    while isinstance(value, (list, tuple)) and value:
        value = value[0]
    return "" if value is None or isinstance(value, (list, tuple)) else str(value)
