"""A teacher that answers from a table of canned replies, and can inject failures.

The way Dagster's `project_fully_featured` swaps `HNSnapshotClient` in for the real client:
graph tests run the whole reflection path (cache, caps, parsing, outcomes) fast and exactly,
without a model. The first rule whose `match` strings all occur in a request's conversation
answers it; a rule with an `error` makes the call fail with that error; no rule means the
`default_reply`, or a failed call when there is none.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from pydantic import Field

from reflection_assets.teacher.backend import normalise
from reflection_assets.teacher.planning import estimate_prompt_tokens
from reflection_assets.teacher.types import CALL_ERROR, CALL_SKIPPED, Admit, ChatRequest, ChatResult, Message, OnResult
from resources.teacher import Teacher

NO_RULE = "scripted teacher: no canned reply matches this request"


class CannedReply(dg.Config):
    """One row of the table: when every `match` string occurs in the conversation, answer `reply` (or fail)."""

    match: list[str] = Field(description="strings that must all occur in the request's messages")
    reply: str = ""
    error: str = Field(default="", description="non-empty: the call fails with this error instead")


class ScriptedTeacher(Teacher):
    """Canned replies in, ChatResults out: no model, no network, the same answer every time."""

    name: str = Field(default="scripted", description="the model name in the llm_calls cache key")
    replies: list[CannedReply] = Field(default_factory=list)
    default_reply: str | None = None
    judge: dict[str, str] = Field(default_factory=dict, description="conversation substring -> option `choose` picks")
    guided: bool = Field(default=False, description="claim guided support (replies are then the whole guided text)")

    def model_name(self) -> str:
        return f"scripted {self.name}"

    def cache_identity(self) -> dict:
        # Like a served model's name: scripts that share a name share cached replies (so a test can
        # lift an injected failure and see only the failed calls made again). Name scripts apart
        # when their replies must not mix in one cache.
        return {"backend": "scripted", "model": self.name}

    @property
    def supports_guided(self) -> bool:
        return self.guided

    def complete(
        self, requests: Sequence[ChatRequest], admit: Admit | None = None, on_result: OnResult | None = None
    ) -> list[ChatResult]:
        results = []
        for i, request in enumerate(requests):
            if admit is not None and not admit(request):
                result = ChatResult(status=CALL_SKIPPED, error="not admitted (cap reached)")
            else:
                result = self.answer(request)
            results.append(result)
            if on_result is not None:
                on_result(i, result)
        return results

    def answer(self, request: ChatRequest) -> ChatResult:
        conversation = "\n".join(content for _, content in request.messages)
        rule = next((r for r in self.replies if all(m in conversation for m in r.match)), None)
        prompt_tokens = estimate_prompt_tokens(request)
        if rule is not None and rule.error:
            return ChatResult(status=CALL_ERROR, error=rule.error, prompt_tokens=prompt_tokens, requests=1)
        text = rule.reply if rule is not None else self.default_reply
        if text is None:
            return ChatResult(status=CALL_ERROR, error=NO_RULE, prompt_tokens=prompt_tokens, requests=1)
        return ChatResult(
            text, prompt_tokens=prompt_tokens, completion_tokens=len(text.split()), requests=1, finish_reason="stop"
        )

    def choose(self, messages: Sequence[Message], options: Sequence[str]) -> list[float]:
        conversation = "\n".join(m["content"] for m in messages)
        picked = next((option for key, option in self.judge.items() if key in conversation), None)
        return normalise({options.index(picked): 0.0} if picked in options else {}, len(options))
