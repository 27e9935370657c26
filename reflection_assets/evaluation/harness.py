"""lm-evaluation-harness on the loaded `PeftModel`: the base and each adapter through one `HFLM`.

A served student runs the same tasks through lm-eval's `local-completions` model
(`reflection_assets.served.evaluation`); both read their samples with `evaluate_lm`.

In process, lm-eval's greedy generation goes through `EngineLM`: lm-eval still builds the prompts,
applies its stop sequences, filters and scores; the answers come from the project's generation engine
through the evaluator, so an answer the evaluation's own suite already generated (same model, prompt
tokens and length) is read from its cache instead of generated again.

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
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflection_assets.evaluation.suites import EvalItem

TASK_DIR = Path(__file__).resolve().parent / "tasks"
ARITHMETIC_TASK = "reflection_arithmetic"
DATA_PLACEHOLDER = "DATA_FILES"


# (adapter or None, prompt token ids of each request, max new tokens) -> the greedy text of each
Generate = Callable[[str | None, list[tuple[int, ...]], int], list[str]]


@dataclass(frozen=True)
class HarnessSample:
    task: str
    doc_index: int
    prompt: str
    response: str  # what the model wrote
    output: str  # what the task's filter extracted from it (the scored answer)
    score: float


def write_arithmetic_task(items: Sequence[EvalItem], folder: Path, max_gen_toks: int | None = None) -> Path:
    """The shipped task YAML and its data, with the data path made absolute; returns the folder.

    `max_gen_toks`: the answer length of the project's own arithmetic suite when it is not the shipped
    default, so both read answers of one length (and lm-eval's are the suite's, from its cache)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = (folder / f"{ARITHMETIC_TASK}.jsonl").resolve()
    data.write_text("".join(json.dumps({"question": i.instruction, "answer": i.reference}) + "\n" for i in items))
    task = (TASK_DIR / f"{ARITHMETIC_TASK}.yaml").read_text().replace(DATA_PLACEHOLDER, json.dumps(str(data)))
    if max_gen_toks is not None:
        task, count = re.subn(r"max_gen_toks: \d+", f"max_gen_toks: {int(max_gen_toks)}", task, count=1)
        assert count == 1, "the shipped task names max_gen_toks"
    (folder / f"{ARITHMETIC_TASK}.yaml").write_text(task)
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
    generate: Generate | None = None,
) -> dict[str | None, list[HarnessSample]]:
    """Per adapter (None = base), every sample of every task with its prompt, output and score.

    `generate`: greedy answers come from it (EngineLM) instead of lm-eval's `model.generate` batches.
    """
    from lm_eval.models.huggingface import HFLM

    manager = task_manager(include_path, tasks)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size) if generate is None else None
    chat = bool(getattr(tokenizer, "chat_template", None))
    out: dict[str | None, list[HarnessSample]] = {}
    for adapter in adapters:
        if generate is not None:
            lm = engine_lm(model, tokenizer, generate, adapter, batch_size)
        with adapter_active(model, adapter):
            out[adapter] = evaluate_lm(lm, tasks, manager, chat, limit, system_instruction)
    return out


def engine_lm(model: Any, tokenizer: Any, generate: Generate, adapter: str | None, batch_size: int = 16) -> Any:
    """lm-eval's HFLM over `model` whose greedy `generate_until` asks `generate` for `adapter`'s answers.

    Everything else is lm-eval's: the prompt (chat template, system instruction), its tokenization and
    truncation, stop sequences (applied to the text, as HFLM does after generating), the loglikelihood
    requests, filters and metrics. Greedy text is prefix-stable, so cutting a longer answer at the first
    stop sequence gives what generating up to it gives. Sampled requests keep HFLM's own path.
    """
    from lm_eval.models.huggingface import HFLM
    from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text

    class EngineLM(HFLM):
        def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
            eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
            think_end = self.think_end_token if isinstance(self.think_end_token, str) else None
            groups: dict[str, list[int]] = {}
            for k, request in enumerate(requests):
                groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(k)
            out: list[str] = [""] * len(requests)
            for members in groups.values():
                kwargs = dict(normalize_gen_kwargs(dict(requests[members[0]].args[1]), self.max_gen_toks))
                if kwargs.get("do_sample") or float(kwargs.get("temperature") or 0.0) > 0:
                    texts = super().generate_until([requests[k] for k in members], disable_tqdm)
                else:
                    until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
                    max_new = int(kwargs.pop("max_gen_toks"))
                    prompts = [self._prompt_ids(requests[k].args[0], max_new) for k in members]
                    answers = generate(adapter, prompts, max_new)
                    texts = [postprocess_generated_text(t, until, think_end) for t in answers]
                for k, text in zip(members, texts):
                    out[k] = text
                    self.cache_hook.add_partial("generate_until", requests[k].args, text)
            return out

        def _prompt_ids(self, context: str, max_new: int) -> tuple[int, ...]:
            """The context as HFLM's batch encoding gives it (special tokens, left truncation), unpadded."""
            ids, mask = self.tok_batch_encode(
                [context], left_truncate_len=self.max_length - max_new, truncation=self.truncation
            )
            return tuple(ids[0][mask[0].bool()].tolist())

    return EngineLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def task_manager(include_path: Path, tasks: Sequence[str] = ()) -> Any:
    """lm-eval's task index with the local tasks; lm-eval's own task index (thousands of YAML files,
    seconds to build) only when a task asked for is not one of the local ones."""
    from lm_eval.tasks import TaskManager

    harness_log = logging.getLogger("lm_eval")  # a caller that quieted it further keeps its level
    harness_log.setLevel(max(harness_log.getEffectiveLevel(), logging.WARNING))
    local = {path.stem for path in Path(include_path).glob("*.yaml")}
    defaults = not tasks or any(task not in local for task in tasks)
    return TaskManager(include_path=str(include_path), include_defaults=defaults)


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
