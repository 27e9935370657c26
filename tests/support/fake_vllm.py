"""A real loopback HTTP server that speaks the subset of vLLM 0.32's API the project uses, answering
with a real in-process transformers model (the bundled SmolLM2 in fp32, or any model folder).

Start it with `with FakeVllm() as server:`; `server.url` is `http://127.0.0.1:PORT/v1`. Every answer is
computed, never canned: prompt log-probabilities by one forward pass, greedy text by `model.generate`.

Supported (shapes as vLLM 0.32 returns them):
- `GET /v1/models`: `{"object": "list", "data": [base card, adapter cards...]}`; the base card has
  `id` (the served name), `owned_by: "vllm"`, `root` (the model folder), `parent: null`, `max_model_len`;
  an adapter card has `root` (the adapter's path) and `parent` (the served name).
- `POST /v1/completions`, body fields:
  - `model`: the served name or a loaded adapter's name (routes through that adapter); anything else: 404.
  - `prompt`: a string (tokenized without special tokens), a list of token ids, or a list of those
    (a batch: one choice per prompt, each with its `index`, in order).
  - `max_tokens` (default: up to `max_model_len`), greedy whatever `temperature` says; stops at EOS
    (not in the text; counted in `usage.completion_tokens`, as vLLM does) or at a `stop` string (cut
    before it); `finish_reason` is "stop" or "length"; the text is decoded with skip_special_tokens.
  - `prompt_logprobs: k`: `choices[i].prompt_logprobs` = `[null, {"<id>": {"logprob", "rank",
    "decoded_token"}}, ...]`, the prompt's own token plus the k most likely others; `null` when not asked.
    With `prompt_logprobs=False` on the server the field is omitted (an OpenAI-compatible server that
    is not vLLM).
  - `logprobs: k` (legacy completions log-probabilities of the generated tokens: `tokens`,
    `token_logprobs`, `top_logprobs` keyed by decoded token with the k most likely plus the chosen one,
    `text_offset`) and `echo: true` (the prompt's text and tokens come first; its first token has
    `null`s), which is what lm-eval's `local-completions` asks for.
  - `usage`: `prompt_tokens`, `completion_tokens`, `total_tokens` (summed over a batch).
  - A prompt that does not fit (`prompt + max_tokens > max_model_len`): HTTP 400 with vLLM's JSON error.
- `POST /tokenize` (server root, not /v1): `{"model", "prompt": str, "add_special_tokens": bool = true}`
  -> `{"count", "max_model_len", "tokens"}`.
- `POST /v1/load_lora_adapter` `{"lora_name", "lora_path"}`: only with `runtime_lora=True` (else 404, the
  route does not exist); 200 with a plain-text body; a name loaded twice: 400; a missing path: 404.
  `POST /v1/unload_lora_adapter` `{"lora_name"}` likewise. Adapters can also be given at start
  (`adapters={"name": path}`, like `--lora-modules`). Adapters are PEFT LoRA folders, applied with
  `PeftModel` on a private copy of the base model (the shared base is never modified).

Not supported: chat completions, sampling (always greedy), `n > 1`, streaming, `suffix`.

Misbehaviour for tests: `prompt_logprobs=False` (see above), `max_model_len`, `throttle_first=N`
(the first N completions answer 429 with `Retry-After: retry_after`), `api_key` (401 without the
bearer token). Every request is recorded in `seen` (path, body, Authorization header, status).
Requests are served one at a time through the model (a lock), like one GPU would. Answers are
deterministic, so each distinct completion is computed once per process and then answered from a
memo shared by every server on the same weights and adapter (`memo=False` turns that off); requests
are still received, counted and answered one by one.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from support.loopback import LoopbackHandler, LoopbackServer, start, stop

_BASES: dict[str, tuple[Any, Any, str]] = {}  # reference -> (model, tokenizer, folder): loaded once per process
_BASES_LOCK = threading.Lock()
# Answers are deterministic (greedy, fp32), so a prompt asked again (the same pairs scored by several
# tests) is answered from here: (model, adapter and its path, ids, what was asked) -> choice.
_MEMO: dict[tuple, dict] = {}
_MEMO_LOCK = threading.Lock()
MEMO_SIZE = 4096


def base_model(ref: str = "bundled") -> tuple[Any, Any, str]:
    """(fp32 CPU model in eval mode, tokenizer, folder) of a model-store reference, loaded once per process."""
    with _BASES_LOCK:
        if ref not in _BASES:
            from reflection_assets.model_store import load_model_and_tokenizer, local_dir

            model, tokenizer, _ = load_model_and_tokenizer(ref, dtype="float32", device="cpu")
            _BASES[ref] = (model.eval(), tokenizer, local_dir(ref)[0])
        return _BASES[ref]


class HttpError(Exception):
    def __init__(self, status: int, message: str, kind: str = "BadRequestError") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind

    def body(self) -> dict:
        return {"object": "error", "message": self.message, "type": self.kind, "param": None, "code": self.status}


@dataclass(frozen=True)
class Seen:
    path: str
    body: dict
    auth: str | None
    status: int
    at: float  # time.monotonic() when the request arrived


@dataclass
class FakeVllm:
    served_name: str = "smollm2"
    adapters: dict[str, str] | None = None  # name -> PEFT adapter folder, loaded at start
    runtime_lora: bool = True  # VLLM_ALLOW_RUNTIME_LORA_UPDATING=True
    prompt_logprobs: bool = True  # False: the field is never returned (not a vLLM server)
    max_model_len: int = 2048
    model_ref: str = "bundled"
    throttle_first: int = 0  # answer the first N completions with 429
    retry_after: str = "0"
    api_key: str | None = None  # when set, every request needs `Authorization: Bearer <key>`
    memo: bool = True  # answer a prompt asked before (by any server on the same weights) from memory
    seen: list[Seen] = field(default_factory=list)
    loaded: dict[str, str] = field(default_factory=dict)  # adapter name -> path
    _lock: threading.Lock = field(default_factory=threading.Lock)  # bookkeeping
    _model_lock: threading.Lock = field(default_factory=threading.Lock)  # one request through the model at a time
    _server: LoopbackServer | None = None
    _peft: Any = None
    _throttled: int = 0

    # -- lifecycle ------------------------------------------------------------------------------------

    def __post_init__(self) -> None:
        self.model, self.tokenizer, self.root = base_model(self.model_ref)
        for name, path in (self.adapters or {}).items():
            self._load_adapter(name, str(path))

    def __enter__(self) -> FakeVllm:
        self._server = start(_Handler, self)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        stop(self._server)
        self._server = None

    @property
    def root_url(self) -> str:
        assert self._server is not None, "use the server as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.root_url}/v1"

    # -- bookkeeping ----------------------------------------------------------------------------------

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def requests(self, path: str | None = None) -> list[Seen]:
        """Requests seen (for one route, e.g. "/v1/completions"), in arrival order."""
        with self._lock:
            return [s for s in self.seen if path is None or s.path == path]

    def count(self, path: str = "/v1/completions", probes: bool = False) -> int:
        """Requests for one route; the served fingerprint's probe (one per client load) only with `probes`."""
        from reflection_assets.served.client import PROBE_IDS

        return sum(
            1 for s in self.requests(path)
            if probes or not isinstance(s.body, dict) or s.body.get("prompt") != list(PROBE_IDS)
        )

    def throttle(self) -> bool:
        with self._lock:
            if self._throttled < self.throttle_first:
                self._throttled += 1
                return True
            return False

    # -- adapters -------------------------------------------------------------------------------------

    def _load_adapter(self, name: str, path: str) -> None:
        from peft import PeftModel

        with self._model_lock:
            if self._peft is None:  # a private copy: the shared base model stays untouched
                self._peft = PeftModel.from_pretrained(copy.deepcopy(self.model), path, adapter_name=name).eval()
            else:
                self._peft.load_adapter(path, adapter_name=name)
            self.loaded[name] = path

    def _unload_adapter(self, name: str) -> None:
        with self._model_lock:
            self._peft.delete_adapter(name)
            del self.loaded[name]
            if not self.loaded:
                self._peft = None

    def models(self) -> dict:
        base = {"id": self.served_name, "object": "model", "created": 0, "owned_by": "vllm", "root": self.root,
                "parent": None, "max_model_len": self.max_model_len, "permission": []}
        cards = [{"id": name, "object": "model", "created": 0, "owned_by": "vllm", "root": path,
                  "parent": self.served_name, "max_model_len": None, "permission": []}
                 for name, path in self.loaded.items()]
        return {"object": "list", "data": [base, *cards]}

    # -- the model ------------------------------------------------------------------------------------

    def _route(self, name: Any) -> Any:
        """The callable model for a request's `model` (call it only while holding `_model_lock`)."""
        if name == self.served_name:
            return None
        if name in self.loaded:
            return name
        raise HttpError(404, f"The model `{name}` does not exist.", "NotFoundError")

    def _forward_logprobs(self, adapter: str | None, ids: list[int]) -> Any:
        """log_softmax of the next-token logits at every position (fp32), [len(ids), vocab]."""
        import torch

        with torch.inference_mode():
            tensor = torch.tensor([ids], dtype=torch.long)
            if adapter is None and self._peft is not None:
                with self._peft.disable_adapter():
                    logits = self._peft(input_ids=tensor).logits
            elif adapter is None:
                logits = self.model(input_ids=tensor).logits
            else:
                self._peft.set_adapter(adapter)
                logits = self._peft(input_ids=tensor).logits
            return torch.log_softmax(logits[0].float(), dim=-1)

    def _generate(self, adapter: str | None, ids: list[int], max_new: int) -> list[int]:
        import torch

        if max_new <= 0:
            return []
        eos = self.tokenizer.eos_token_id
        kwargs = dict(max_new_tokens=max_new, do_sample=False, num_beams=1, eos_token_id=eos,
                      pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos,
                      attention_mask=torch.ones(1, len(ids), dtype=torch.long))
        with torch.inference_mode():
            tensor = torch.tensor([ids], dtype=torch.long)
            if adapter is None and self._peft is not None:
                with self._peft.disable_adapter():
                    out = self._peft.generate(input_ids=tensor, **kwargs)
            elif adapter is None:
                out = self.model.generate(input_ids=tensor, **kwargs)
            else:
                self._peft.set_adapter(adapter)
                out = self._peft.generate(input_ids=tensor, **kwargs)
        return [int(t) for t in out[0, len(ids):]]

    def _decoded(self, token: int) -> str:
        return self.tokenizer.decode([token])

    def _top(self, row: Any, k: int) -> list[tuple[int, float]]:
        import torch

        if k <= 0:
            return []
        values, indices = torch.topk(row, k)
        return [(int(i), float(v)) for v, i in zip(values, indices)]

    def _prompt_logprobs(self, logprobs: Any, ids: list[int], k: int) -> list[dict | None]:
        import torch

        entries: list[dict | None] = [None]
        if len(ids) < 2:
            return entries
        rows = logprobs[: len(ids) - 1]
        owns = rows.gather(1, torch.tensor(ids[1:]).unsqueeze(1))  # [n - 1, 1]
        ranks = (rows > owns).sum(dim=1) + 1
        for position in range(1, len(ids)):
            row = rows[position - 1]
            own = float(owns[position - 1, 0])
            entry = {str(ids[position]): {"logprob": own, "rank": int(ranks[position - 1]),
                                          "decoded_token": self._decoded(ids[position])}}
            for rank, (token, value) in enumerate(self._top(row, k), start=1):
                entry.setdefault(str(token), {"logprob": value, "rank": rank, "decoded_token": self._decoded(token)})
            entries.append(entry)
        return entries

    def _legacy_logprobs(self, logprobs: Any, ids: list[int], first: int, k: int) -> dict:
        """OpenAI's legacy completions `logprobs` for ids[first:] (first == 0: the first token has none)."""
        tokens, token_logprobs, top_logprobs, offsets, offset = [], [], [], [], 0
        for position in range(first, len(ids)):
            token = ids[position]
            text = self._decoded(token)
            tokens.append(text)
            offsets.append(offset)
            offset += len(text)
            if position == 0:
                token_logprobs.append(None)
                top_logprobs.append(None)
                continue
            row = logprobs[position - 1]
            top = {self._decoded(t): v for t, v in self._top(row, k)}
            top.setdefault(text, float(row[token]))
            token_logprobs.append(float(row[token]))
            top_logprobs.append(top)
        return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs,
                "text_offset": offsets}

    def prompts(self, prompt: Any) -> list[list[int]]:
        """The token ids of every prompt of a request (a string, ids, or a list of either)."""
        def one(item: Any) -> list[int]:
            if isinstance(item, str):
                return list(self.tokenizer(item, add_special_tokens=False)["input_ids"])
            if isinstance(item, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
                return list(item)
            raise HttpError(400, f"prompt must be a string, a list of token ids or a list of those, not {item!r:.80}")

        if isinstance(prompt, str) or (isinstance(prompt, list) and prompt and isinstance(prompt[0], int)):
            return [one(prompt)]
        if isinstance(prompt, list) and prompt:
            return [one(item) for item in prompt]
        raise HttpError(400, "prompt must not be empty")

    def completions(self, body: dict) -> dict:
        adapter = self._route(body.get("model"))
        batch = self.prompts(body.get("prompt"))
        max_tokens = body.get("max_tokens", 16)  # vLLM: None means "up to max_model_len"
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else list(stops)
        want_prompt = body.get("prompt_logprobs")
        want_logprobs = body.get("logprobs")
        echo = bool(body.get("echo"))
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for ids in batch:
            if not ids:
                raise HttpError(400, "The prompt cannot be empty.")
            budget = self.max_model_len - len(ids) if max_tokens is None else int(max_tokens)
            if len(ids) + max(budget, 1) > self.max_model_len:
                raise HttpError(
                    400,
                    f"This model's maximum context length is {self.max_model_len} tokens. However, your request "
                    f"has {len(ids)} input tokens and asks for {budget} output tokens. Please reduce the length "
                    "of the input prompt.",
                )
        for index, ids in enumerate(batch):
            budget = self.max_model_len - len(ids) if max_tokens is None else int(max_tokens)
            adapter_key = (adapter, self.loaded.get(adapter or ""))
            key = (self.model_ref, adapter_key, tuple(ids), budget, tuple(stops), want_prompt, want_logprobs, echo)
            with _MEMO_LOCK:
                memo = _MEMO.get(key) if self.memo else None
            choice = memo if memo is not None else self._choice(adapter, ids, budget, stops, want_prompt,
                                                                 want_logprobs, echo)
            if memo is None:
                with _MEMO_LOCK:
                    if len(_MEMO) >= MEMO_SIZE:
                        _MEMO.pop(next(iter(_MEMO)))
                    _MEMO[key] = choice
            choice = copy.deepcopy(choice)
            choice["index"] = index
            if not self.prompt_logprobs:
                choice.pop("prompt_logprobs")
            new_tokens = choice.pop("_new_tokens")
            choices.append(choice)
            prompt_tokens += len(ids)
            completion_tokens += new_tokens
        return {"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": body.get("model"),
                "choices": choices, "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                              "total_tokens": prompt_tokens + completion_tokens}}

    def _choice(self, adapter: str | None, ids: list[int], budget: int, stops: list[str], want_prompt: Any,
                want_logprobs: Any, echo: bool) -> dict:
        """One prompt's choice, computed (plus `_new_tokens`, the usage count)."""
        eos = self.tokenizer.eos_token_id
        with self._model_lock:
            if budget == 1:  # one forward pass gives the prompt's log-probabilities and the next token
                logprobs = self._forward_logprobs(adapter, ids)
                new = [int(logprobs[-1].argmax())]
            else:
                new, logprobs = self._generate(adapter, ids, budget), None
            kept = new[:-1] if new and new[-1] == eos else new
            if logprobs is None and (want_prompt is not None or want_logprobs is not None):
                logprobs = self._forward_logprobs(adapter, ids + kept)
        finish = "stop" if new and new[-1] == eos else "length"
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        for stop_text in stops:
            if stop_text and stop_text in text:
                text, finish = text.split(stop_text, 1)[0], "stop"
        full = ids + kept
        choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish,
                                  "stop_reason": None, "_new_tokens": len(new)}
        if want_logprobs is not None:
            choice["logprobs"] = self._legacy_logprobs(logprobs, full, 0 if echo else len(ids), int(want_logprobs))
        if echo:
            choice["text"] = self.tokenizer.decode(ids) + text
        choice["prompt_logprobs"] = (
            self._prompt_logprobs(logprobs, ids, int(want_prompt)) if want_prompt is not None else None
        )
        return choice

    def tokenize(self, body: dict) -> dict:
        self._route(body.get("model", self.served_name))
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise HttpError(400, "prompt must be a string")
        ids = list(self.tokenizer(prompt, add_special_tokens=bool(body.get("add_special_tokens", True)))["input_ids"])
        return {"count": len(ids), "max_model_len": self.max_model_len, "tokens": ids, "token_strs": None}

    def load_lora(self, body: dict) -> str:
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            raise HttpError(400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput")
        if name == self.served_name:
            raise HttpError(400, f"The lora adapter '{name}' conflicts with a served base model.", "InvalidUserInput")
        if name in self.loaded and not body.get("load_inplace"):
            raise HttpError(400, f"The lora adapter '{name}' has already been loaded. If you want to load the "
                            "adapter in place, set 'load_inplace' to True.", "InvalidUserInput")
        from pathlib import Path

        if not (Path(path) / "adapter_config.json").is_file():
            raise HttpError(404, f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError")
        if name in self.loaded:
            self._unload_adapter(name)
        self._load_adapter(name, str(path))
        return f"Success: LoRA adapter '{name}' added successfully."

    def unload_lora(self, body: dict) -> str:
        name = body.get("lora_name")
        if name not in self.loaded:
            raise HttpError(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        self._unload_adapter(name)
        return f"Success: LoRA adapter '{name}' removed successfully."


class _Handler(LoopbackHandler):
    owner: FakeVllm
    arrived: float = 0.0

    def authorized(self) -> bool:
        key = self.owner.api_key
        return not key or self.headers.get("Authorization") == f"Bearer {key}"

    def reply(self, status: int, payload: Any, body: dict, headers: dict[str, str] | None = None) -> None:
        self.owner.record(Seen(self.path, body, self.headers.get("Authorization"), status, self.arrived))
        if isinstance(payload, str):  # vLLM's LoRA routes answer plain text
            data = payload.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_bytes(status, json.dumps(payload).encode(), headers)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.arrived = time.monotonic()
        if not self.authorized():
            return self.reply(401, {"error": "Unauthorized"}, {})
        if self.path.rstrip("/") == "/v1/models":
            return self.reply(200, self.owner.models(), {})
        self.reply(404, {"detail": "Not Found"}, {})

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.arrived = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) or b"{}"
        try:
            body = json.loads(raw)
        except ValueError:
            return self.reply(400, HttpError(400, "invalid JSON").body(), {})
        if not self.authorized():
            return self.reply(401, {"error": "Unauthorized"}, body)
        path = self.path.rstrip("/")
        routes = {"/v1/completions": self.owner.completions, "/tokenize": self.owner.tokenize}
        if self.owner.runtime_lora:
            routes.update({"/v1/load_lora_adapter": self.owner.load_lora,
                           "/v1/unload_lora_adapter": self.owner.unload_lora})
        handler = routes.get(path)
        if handler is None:
            return self.reply(404, {"detail": "Not Found"}, body)
        if path == "/v1/completions" and self.owner.throttle():
            return self.reply(429, {"error": "rate limited"}, body, {"Retry-After": self.owner.retry_after})
        try:
            result = handler(body)
        except HttpError as exc:
            return self.reply(exc.status, exc.body(), body)
        try:
            self.reply(200, result, body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up
