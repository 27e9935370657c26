"""The in-process teacher: a causal LM in this process writes reflections and judges pairs.

Generation runs on reflection_assets.generation's engine: cache reuse across guided steps, a shared
prefix computed once, token-budget batches, continuous batching. `generation="generate"` keeps the
earlier path (one `model.generate` per batch of `batch_size` and per guided step) for comparison;
sampled (temperature > 0) calls take that path too. A failing engine batch is split until the
failure is pinned to single rows, so one overlong prompt or an out-of-memory never fails its
neighbours. `resources.teacher_local.TransformersTeacher` loads the model and wraps this as a
Dagster resource.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from reflection_assets.devices import free_cuda_memory, is_out_of_memory
from reflection_assets.teacher.backend import normalise
from reflection_assets.teacher.guided import GuidedState, cut_at_stop
from reflection_assets.teacher.stats import JudgeStats
from reflection_assets.teacher.types import (
    CALL_ERROR,
    CALL_SKIPPED,
    Admit,
    ChatRequest,
    ChatResult,
    Message,
    OnResult,
    Sampling,
)

GenerationPath = Literal["engine", "generate"]


@dataclass
class Generated:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) | "length"


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Left padding (so every row's continuation starts at the same column) and a pad token."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def generation_kwargs(sampling: Sampling, tokenizer: Any) -> dict:
    """Arguments for model.generate; greedy when temperature is 0."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": sampling.max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if sampling.min_new_tokens:
        kwargs["min_new_tokens"] = sampling.min_new_tokens
    if sampling.temperature > 0:
        kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
    else:
        # Unset the model's sampling defaults so greedy decoding does not warn about them.
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if sampling.stop:
        kwargs.update(stop_strings=list(sampling.stop), tokenizer=tokenizer)
    return kwargs


class LocalTeacher:
    """A loaded model and tokenizer as a teacher: complete requests in batches, judge options."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        generation: GenerationPath = "engine",
        batch_size: int = 8,
        batch_tokens: int | None = None,
        continuous: bool = True,
        num_threads: int | None = None,
        judge_stats: JudgeStats | None = None,
    ) -> None:
        self.model, self.tokenizer = model, prepare_tokenizer(tokenizer)
        self.generation, self.batch_size, self.batch_tokens = generation, batch_size, batch_tokens
        self.continuous, self.num_threads = continuous, num_threads
        self.judge_stats = judge_stats if judge_stats is not None else JudgeStats()
        self._engine: Any = None

    def load(self) -> tuple[Any, Any]:
        """The model and its (left-padding) tokenizer."""
        return self.model, self.tokenizer

    def engine(self) -> Any:
        """The generation engine over the loaded model (made once)."""
        if self._engine is None:
            from reflection_assets.generation.engine import GenerationEngine

            self._engine = GenerationEngine(
                self.model,
                self.tokenizer,
                batch_tokens=self.batch_tokens,
                num_threads=self.num_threads,
                continuous=self.continuous,
            )
        return self._engine

    def uses_engine(self, sampling: Sampling) -> bool:
        """Greedy calls run on the engine unless the earlier path is asked for."""
        return self.generation == "engine" and sampling.temperature == 0

    # -- generation --------------------------------------------------------------------------

    def render(self, messages: Sequence[Message], assistant_prefix: str = "") -> str:
        """The chat template's prompt with the assistant turn opened, plus our prefix."""
        _, tokenizer = self.load()
        text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        return text + assistant_prefix

    def estimate_prompt_tokens(self, request: ChatRequest) -> int:
        return len(self.tokenizer(self.render(request.message_dicts()), add_special_tokens=False)["input_ids"])

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[Generated]:
        """One left-padded generate() call over `prompts` (already rendered)."""
        import torch

        from reflection_assets.generation.stops import stop_token_ids  # torch and transformers: at use, not import

        model, tokenizer = self.load()
        encoded = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            output = model.generate(**encoded, **generation_kwargs(sampling, tokenizer))
        width = encoded["input_ids"].shape[1]
        enders = stop_token_ids(model, tokenizer)
        results = []
        for row, prompt_len in zip(output[:, width:].tolist(), encoded["attention_mask"].sum(dim=1).tolist()):
            end = next((i + 1 for i, t in enumerate(row) if t in enders), None)
            ids = row if end is None else row[:end]
            text = tokenizer.decode(ids, skip_special_tokens=True)
            hit_stop = end is not None or cut_at_stop(text, sampling.stop)[1]
            finish = "stop" if hit_stop or len(ids) < sampling.max_new_tokens else "length"
            results.append(Generated(text, int(prompt_len), len(ids), finish))
        return results

    def complete(
        self, requests: Sequence[ChatRequest], admit: Admit | None = None, on_result: OnResult | None = None
    ) -> list[ChatResult]:
        """Batches of similar length (least padding); each batch is admitted, run, then reported."""
        _, tokenizer = self.load()
        results: list[ChatResult | None] = [None] * len(requests)
        prompts = [self.render(r.message_dicts()) for r in requests]
        lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]] if prompts else []
        # Group requests that share sampling and guide, then sort each group by prompt length.
        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault((request.sampling, request.guide), []).append(i)
        for (sampling, guide), members in groups.items():
            if self.uses_engine(sampling) and self.engine().continuous and len(members) > 1:
                self.complete_running(members, requests, prompts, lengths, admit, results, on_result)
                continue
            for batch in self.plan_batches(members, lengths, sampling, guide):
                admitted = [i for i in batch if admit is None or admit(requests[i])]
                for i in batch:
                    if i not in admitted:
                        results[i] = ChatResult(status=CALL_SKIPPED, error="not admitted (cap reached)")
                        if on_result is not None:
                            on_result(i, results[i])
                if not admitted:
                    continue
                for i, result in zip(
                    admitted, self.run_batch([requests[i] for i in admitted], [prompts[i] for i in admitted])
                ):
                    results[i] = result
                    if on_result is not None:
                        on_result(i, result)
        return [r if r is not None else ChatResult(status=CALL_SKIPPED) for r in results]

    def complete_running(
        self,
        members: list[int],
        requests: Sequence[ChatRequest],
        prompts: list[str],
        lengths: list[int],
        admit: Admit | None,
        results: list[ChatResult | None],
        on_result: OnResult | None,
    ) -> None:
        """Requests that share sampling and guide through one running engine batch: each is admitted as it
        starts and reported as it finishes. Should the engine fail, the rows not yet reported go through
        the batch path, which pins a failure to its rows."""
        group = [requests[i] for i in members]
        engine_requests, runs = self.engine_requests(group, [prompts[i] for i in members])
        admitted: set[int] = set()
        last = [time.perf_counter()]

        def report(k: int, result: ChatResult) -> None:
            results[members[k]] = result
            if on_result is not None:
                on_result(members[k], result)

        def admit_one(k: int) -> bool:
            if admit is None or admit(group[k]):
                admitted.add(k)
                return True
            report(k, ChatResult(status=CALL_SKIPPED, error="not admitted (cap reached)"))
            return False

        def finished(indices: list[int], outputs: list[Any]) -> None:
            now = time.perf_counter()
            share, last[0] = (now - last[0]) / len(indices), now  # the wall time since the last rows finished
            for k, output in zip(indices, outputs):
                result = self.engine_result(output, runs[k] if runs else None)
                result.latency_s = share
                report(k, result)

        try:
            self.engine().generate(engine_requests, on_batch=finished, admit=admit_one)
            return
        except (RuntimeError, ValueError, IndexError) as exc:  # out of memory, an overlong prompt...
            out_of_memory = is_out_of_memory(exc)
        if out_of_memory:  # out of the except block: its traceback no longer holds the batch
            free_cuda_memory()
        rest = [k for k in range(len(members)) if results[members[k]] is None]
        position = {members[k]: k for k in rest}
        planned = self.plan_batches(list(position), lengths, group[0].sampling, group[0].guide)
        for planned_batch in planned:  # the batch path's own plan: token budget, longest first
            batch = [k for k in (position[i] for i in planned_batch) if k in admitted or admit_one(k)]
            if batch:
                made = self.run_batch([group[k] for k in batch], [prompts[members[k]] for k in batch])
                for k, result in zip(batch, made):
                    report(k, result)

    def plan_batches(self, members: list[int], lengths: list[int], sampling: Sampling, guide: Any) -> list[list[int]]:
        """Engine: rows x (prompt + new tokens) within its token budget; else `batch_size` rows. Length-sorted."""
        if not self.uses_engine(sampling):
            members = sorted(members, key=lambda i: lengths[i])
            return [members[start : start + self.batch_size] for start in range(0, len(members), self.batch_size)]
        planned = guide.max_new_tokens() + sum(len(s.prefix) for s in guide.steps) if guide else sampling.max_new_tokens
        return [
            [members[k] for k in batch] for batch in self.engine().plan_lengths([lengths[i] + planned for i in members])
        ]

    def run_batch(self, requests: list[ChatRequest], prompts: list[str]) -> list[ChatResult]:
        """Plain or guided generation for requests that share sampling and guide."""
        start = time.perf_counter()
        made: list[ChatResult] | None = None
        try:
            if self.uses_engine(requests[0].sampling):
                made = self.run_engine_or_split(requests, prompts)
            elif requests[0].guide is None:
                outs = self.generate(prompts, requests[0].sampling)
                made = [
                    ChatResult(
                        o.text,
                        prompt_tokens=o.prompt_tokens,
                        completion_tokens=o.completion_tokens,
                        requests=1,
                        finish_reason=o.finish_reason,
                    )
                    for o in outs
                ]
            else:
                made = self.run_guided(requests, prompts)
        except (RuntimeError, ValueError) as exc:  # e.g. out of memory, a prompt longer than the model allows
            error, out_of_memory = f"{type(exc).__name__}: {exc}"[:500], is_out_of_memory(exc)
        if made is None:  # out of the except block: its traceback no longer holds the failed batch
            if out_of_memory:
                free_cuda_memory()
            return [ChatResult(status=CALL_ERROR, error=error, requests=1) for _ in requests]
        # One batch, one wall time: each row is charged its share.
        share = (time.perf_counter() - start) / len(requests)
        for result in made:
            result.latency_s = share
        return made

    def run_engine_or_split(self, requests: list[ChatRequest], prompts: list[str]) -> list[ChatResult]:
        """A failing engine batch is halved until the failure is pinned to single rows (an error result each).

        Engine batches are large (a token budget, not 8 rows): one overlong prompt or an out-of-memory
        must not fail every row beside it. The halves run after the `except` block, not in it: there
        the exception's traceback still holds the failed batch's cache and activations.
        """
        try:
            return self.run_engine(requests, prompts)
        except (RuntimeError, ValueError, IndexError) as exc:
            error, out_of_memory = f"{type(exc).__name__}: {exc}"[:500], is_out_of_memory(exc)
        if out_of_memory:
            free_cuda_memory()
        if len(requests) == 1:
            return [ChatResult(status=CALL_ERROR, error=error, requests=1)]
        half = len(requests) // 2
        return self.run_engine_or_split(requests[:half], prompts[:half]) + self.run_engine_or_split(
            requests[half:], prompts[half:]
        )

    def run_engine(self, requests: list[ChatRequest], prompts: list[str]) -> list[ChatResult]:
        """One engine batch: plain requests, or guided plans continued from the cache step after step."""
        engine_requests, runs = self.engine_requests(requests, prompts)
        outs = self.engine().run_batch(engine_requests)
        return [self.engine_result(o, runs[k] if runs else None) for k, o in enumerate(outs)]

    def engine_requests(self, requests: list[ChatRequest], prompts: list[str]) -> tuple[list[Any], list[Any] | None]:
        """Engine requests for rows that share sampling and guide (and each row's guided run, if guided)."""
        from reflection_assets.generation.engine import GenerationRequest
        from reflection_assets.teacher.guided_run import GuidedRun

        tokenizer = self.engine().tokenizer
        plan, sampling = requests[0].guide, requests[0].sampling
        if plan is not None:
            runs = [GuidedRun(tokenizer, prompt, plan) for prompt in prompts]
            return [run.request() for run in runs], runs
        ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        stop = tuple(sampling.stop)
        made = [
            GenerationRequest(tuple(row), sampling.max_new_tokens, stop=stop, min_new_tokens=sampling.min_new_tokens)
            for row in ids
        ]
        return made, None

    @staticmethod
    def engine_result(output: Any, run: Any | None) -> ChatResult:
        """A finished engine request as a call's result (a guided run closes its assistant turn)."""
        if run is None:
            return ChatResult(
                output.text,
                prompt_tokens=output.prompt_tokens,
                completion_tokens=output.new_tokens,
                requests=1,
                finish_reason=output.finish_reason,
            )
        return ChatResult(
            run.text(),
            prompt_tokens=output.prompt_tokens,
            completion_tokens=run.completion_tokens,
            requests=run.requests,
            finish_reason=run.finish_reason,
        )

    def run_guided(self, requests: list[ChatRequest], prompts: list[str]) -> list[ChatResult]:
        plan = requests[0].guide
        assert plan is not None
        states = [GuidedState() for _ in requests]
        results = [ChatResult(finish_reason="stop") for _ in requests]
        for step in plan.steps:
            active = [i for i, s in enumerate(states) if not s.finished]
            if not active:
                break
            sampling = Sampling(
                max_new_tokens=step.max_new_tokens,
                temperature=requests[0].sampling.temperature,
                top_p=requests[0].sampling.top_p,
                seed=requests[0].sampling.seed,
                stop=step.stop,
            )
            outs = self.generate([prompts[i] + states[i].prefix_for(step) for i in active], sampling)
            for i, out in zip(active, outs):
                states[i].absorb(step, out.text, hit_length=out.finish_reason == "length")
                results[i].prompt_tokens += out.prompt_tokens
                results[i].completion_tokens += out.completion_tokens
                results[i].requests += 1
                if states[i].truncated:
                    results[i].finish_reason = "length"
        for state, result in zip(states, results):
            result.text = state.close(plan)
        return results

    def choose_many(self, asks: Sequence[tuple[Sequence[Message], Sequence[str]]]) -> list[list[float]]:
        """`choose` for every question, in left-padded batches within the engine's token budget.

        Where every option of a question is one token (the judge's "1"/"2"), one row (its prompt) gives
        all of them from its next-token distribution; otherwise each option is a row of its own (prompt
        + option). Positions follow the attention mask, so each row computes as if it were alone.
        """
        import torch

        from reflection_assets.scoring.engine import plan_batches

        model, tokenizer = self.load()
        # (question, token ids, options): a prompt row scores single tokens after its end (`appended`);
        # an option row scores its own last len(option) tokens.
        rows: list[tuple[int, list[int], list[tuple[int, list[int]]], bool]] = []
        for q, (messages, options) in enumerate(asks):
            prompt = tokenizer(self.render(messages), add_special_tokens=False)["input_ids"]
            encoded = [(i, tokenizer(o, add_special_tokens=False)["input_ids"]) for i, o in enumerate(options)]
            encoded = [(i, ids) for i, ids in encoded if ids]
            if all(len(ids) == 1 for _, ids in encoded):
                rows.append((q, prompt, encoded, True))
            else:
                rows += [(q, prompt + ids, [(i, ids)], False) for i, ids in encoded]
        scores: list[dict[int, float]] = [{} for _ in asks]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        for batch in plan_batches([len(row[1]) for row in rows], self.engine().batch_tokens):
            width = max(len(rows[r][1]) for r in batch)
            keep = 1 + max((len(rows[r][2][0][1]) for r in batch if not rows[r][3]), default=0)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, r in enumerate(batch):
                sequence = rows[r][1]
                ids[b, width - len(sequence) :] = torch.tensor(sequence)
                mask[b, width - len(sequence) :] = 1
            with torch.inference_mode():
                logits = model(
                    input_ids=ids.to(model.device),
                    attention_mask=mask.to(model.device),
                    position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(model.device),
                    logits_to_keep=keep,
                ).logits.float()
            logprobs = torch.log_softmax(logits, dim=-1).cpu()
            for b, r in enumerate(batch):
                question, _, options, appended = rows[r]
                for i, option_ids in options:
                    if appended:  # the next token after the prompt: the last kept position
                        scores[question][i] = float(logprobs[b, keep - 1, option_ids[0]])
                    else:  # token j of the option sits at column width-k+j, predicted one column before
                        k = len(option_ids)
                        picked = [logprobs[b, keep - k - 1 + j, t] for j, t in enumerate(option_ids)]
                        scores[question][i] = float(sum(picked))
        results = []
        for q, (_, options) in enumerate(asks):
            self.judge_stats.record("logprobs" if scores[q] else "none")
            results.append(normalise(scores[q], len(options)))
        return results

    def flow_stats(self) -> dict[str, int | float]:
        """Nothing is paced in process: batches run as the engine forms them."""
        return {}

    def choose(self, messages: Sequence[Message], options: Sequence[str]) -> list[float]:
        """Softmax over options of the summed log-probability of each option's tokens."""
        import torch

        model, tokenizer = self.load()
        prompt_ids = tokenizer(self.render(messages), add_special_tokens=False)["input_ids"]
        scores: dict[int, float] = {}
        for i, option in enumerate(options):
            option_ids = tokenizer(option, add_special_tokens=False)["input_ids"]
            if not option_ids:
                continue
            ids = torch.tensor([prompt_ids + option_ids], device=model.device)
            with torch.inference_mode():
                logits = model(ids).logits[0, len(prompt_ids) - 1 : -1].float()
            logprobs = torch.log_softmax(logits, dim=-1).gather(
                1, torch.tensor(option_ids, device=model.device)[:, None]
            )
            scores[i] = float(logprobs.sum())
        self.judge_stats.record("logprobs" if scores else "none")
        return normalise(scores, len(options))
