"""Tokenization rules: each pair becomes the (context ids, scored ids) sequences behind its scores.

The scored text is tokenized on its own (no special tokens) and appended as ids, never
re-tokenized inside the joined string, so the conditioned and unconditioned passes score exactly
the same tokens. Truncation keeps the prompt and cuts the scored text; r-IFD cuts the response
*inside* its reverse prompt first so the instruction still fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reflection_assets.schema import Pair
from reflection_assets.scoring import statuses
from reflection_assets.scoring.templates import REVERSE_PROMPT, check_template, default_template, prompt_ids, start_ids

try:  # chat templates raise jinja2 errors on malformed conversations (a per-row problem)
    from jinja2.exceptions import TemplateError as _TemplateError
except ImportError:  # pragma: no cover - jinja2 ships with transformers
    _TemplateError = ValueError

ROW_ERRORS = (ValueError, TypeError, KeyError, IndexError, _TemplateError)


ProgressFn = Callable[[int, int], None]  # (done, total) in non-padding tokens


@dataclass(frozen=True)
class SeqLoss:
    """A scored sequence's mean loss (None when it could not be scored) and its status."""

    loss: float | None
    status: str


@dataclass(frozen=True)
class Seq:
    """One forward pass: mean NLL of `scored` given `context` (hashable, so equal texts dedupe)."""

    context: tuple[int, ...]
    scored: tuple[int, ...]

    @property
    def length(self) -> int:
        return len(self.context) + len(self.scored)


@dataclass(frozen=True)
class Plan:
    """The two passes behind one IFD-style score (conditioned, unconditioned), or why there are none."""

    status: str
    cond: Seq | None = None
    alone: Seq | None = None

    @property
    def n_scored(self) -> int | None:
        return len(self.cond.scored) if self.cond is not None else None


@dataclass(frozen=True)
class PromptSettings:
    """Template, start token and length limit, resolved once against a tokenizer."""

    template: str
    start_token: str
    start: tuple[int, ...]
    max_length: int


def resolve_settings(tokenizer: Any, template: str | None, start_token: str, max_length: int) -> PromptSettings:
    """Pick the default template and the start ids; raises ValueError on a bad combination."""
    name = check_template(template or default_template(tokenizer), tokenizer)
    if max_length < 2:
        raise ValueError("max_length must be at least 2")
    return PromptSettings(name, start_token, tuple(start_ids(tokenizer, name, start_token)), max_length)


def instruction_text(pair: Pair) -> str:
    """The r-IFD scored text: instruction and input joined by a newline (the research code uses nothing)."""
    return f"{pair.instruction}\n{pair.input}" if pair.input else pair.instruction


def encode_text(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _empty_status(pair: Pair, response_first: bool) -> str | None:
    checks = [(pair.output, statuses.EMPTY_RESPONSE), (pair.instruction + pair.input, statuses.EMPTY_INSTRUCTION)]
    for text, status in checks if response_first else reversed(checks):
        if not text.strip():
            return status
    return None


def _fit(prompt: list[int], scored: list[int], settings: PromptSettings) -> Plan:
    """Cut the scored ids so both passes fit max_length; prompt_too_long when none would."""
    if not prompt:  # the first scored token needs a position to be predicted from
        return Plan(statuses.error("empty_prompt"))
    room = min(settings.max_length - len(prompt), settings.max_length - len(settings.start))
    if room < 1:
        return Plan(statuses.PROMPT_TOO_LONG)
    kept = tuple(scored[:room])
    return Plan(statuses.OK, Seq(tuple(prompt), kept), Seq(settings.start, kept))


def plan_ifd(tokenizer: Any, settings: PromptSettings, pair: Pair) -> Plan:
    """IFD: the response given the templated instruction vs. given one start token."""
    empty = _empty_status(pair, response_first=True)
    if empty:
        return Plan(empty)
    try:
        response = encode_text(tokenizer, pair.output)
        if not response:
            return Plan(statuses.EMPTY_RESPONSE)
        prompt = prompt_ids(tokenizer, settings.template, pair.instruction, pair.input, pair.system, pair.history)
    except ROW_ERRORS as exc:
        return Plan(statuses.error(type(exc).__name__))
    return _fit(prompt, response, settings)


def _decode_prefix(tokenizer: Any, ids: list[int]) -> str:
    """Text of the first tokens of a response, without a dangling half character."""
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False).rstrip("\ufffd")


def reverse_prompt_ids(tokenizer: Any, settings: PromptSettings, pair: Pair, response_text: str) -> list[int]:
    query = REVERSE_PROMPT.format_map({"response": response_text})
    return prompt_ids(tokenizer, settings.template, query, "", pair.system, pair.history)


def fit_reverse_prompt(tokenizer: Any, settings: PromptSettings, pair: Pair, n_scored: int) -> list[int] | None:
    """Reverse-prompt ids with the response cut so `n_scored` instruction tokens fit; None if nothing fits.

    When the instruction is too long to fit beside any of the response, the response keeps half
    the room and the instruction is cut (by the caller) to the rest.
    """
    full = reverse_prompt_ids(tokenizer, settings, pair, pair.output)
    if len(full) + n_scored <= settings.max_length:
        return full
    bare = reverse_prompt_ids(tokenizer, settings, pair, "")
    room = settings.max_length - len(bare)
    if room < 1:
        return None
    response = encode_text(tokenizer, pair.output)
    keep = min(len(response), max(room - n_scored, room // 2))
    target = len(bare) + keep
    ids = reverse_prompt_ids(tokenizer, settings, pair, _decode_prefix(tokenizer, response[:keep]))
    # Re-tokenizing a cut text in context can merge differently: shrink until the prompt fits.
    for _ in range(16):
        if len(ids) <= target or keep == 0:
            break
        keep = max(0, keep - max(1, len(ids) - target))
        ids = reverse_prompt_ids(tokenizer, settings, pair, _decode_prefix(tokenizer, response[:keep]))
    return ids if len(ids) < settings.max_length else None


def plan_rifd(tokenizer: Any, settings: PromptSettings, pair: Pair) -> Plan:
    """r-IFD: the instruction given a reverse prompt showing the response vs. given one start token."""
    empty = _empty_status(pair, response_first=False)
    if empty:
        return Plan(empty)
    try:
        scored = encode_text(tokenizer, instruction_text(pair))
        if not scored:
            return Plan(statuses.EMPTY_INSTRUCTION)
        prompt = fit_reverse_prompt(tokenizer, settings, pair, len(scored))
    except ROW_ERRORS as exc:
        return Plan(statuses.error(type(exc).__name__))
    if prompt is None:
        return Plan(statuses.PROMPT_TOO_LONG)
    return _fit(prompt, scored, settings)
