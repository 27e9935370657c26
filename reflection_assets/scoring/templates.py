"""Prompt templates for IFD scoring: text rendering and prompt ids.

An unfamiliar template inflates IFD, so the student's own chat template is the default when it
has one; `alpaca` is what the published numbers use. Prompt ids are always produced by the
tokenizer with special tokens (``chat``: straight from ``apply_chat_template``, since tokenizing
its rendered text again would add a second BOS on Llama-3-style templates).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

from reflection_assets.hashing import content_hash
from reflection_assets.schema import Turn

TemplateName = Literal["alpaca", "vicuna", "chat", "plain"]
TEMPLATES: tuple[str, ...] = get_args(TemplateName)
ALPACA, VICUNA, CHAT, PLAIN = TEMPLATES
AUTO = "auto"  # a setting, not a template: chat when the student has a chat template, else alpaca
TemplateSetting = Literal["auto", TemplateName]

# Context of the unconditioned pass (see start_ids).
StartToken = Literal["bos", "eos", "header"]
START_TOKENS: tuple[str, ...] = get_args(StartToken)

ALPACA_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
VICUNA_INPUT = VICUNA_SYSTEM + " USER: {instruction}\nInput:\n{input} ASSISTANT:"
VICUNA_NO_INPUT = VICUNA_SYSTEM + " USER: {instruction} ASSISTANT:"
PLAIN_INPUT = "{instruction}\n{input}\n"
PLAIN_NO_INPUT = "{instruction}\n"

# The authors' reverse prompt (r-IFD): show the response, ask for the instruction behind it.
REVERSE_PROMPT = (
    "Below is the response to an instruction, please guess the corresponding instruction for the "
    "given response.\n{response}\nGenerate the instruction for the above response."
)

# Text-template response headers (the `header` start-token option); chat derives its own.
RESPONSE_HEADERS = {ALPACA: "### Response:", VICUNA: "ASSISTANT:", PLAIN: ""}

_TEXT_TEMPLATES = {
    ALPACA: (ALPACA_INPUT, ALPACA_NO_INPUT),
    VICUNA: (VICUNA_INPUT, VICUNA_NO_INPUT),
    PLAIN: (PLAIN_INPUT, PLAIN_NO_INPUT),
}


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def default_template(tokenizer: Any) -> str:
    """`chat` when the student has a chat template (an unfamiliar one inflates IFD), else `alpaca`."""
    return CHAT if has_chat_template(tokenizer) else ALPACA


def check_template(name: str, tokenizer: Any) -> str:
    """Validate a template name for this tokenizer; raises ValueError with a user-facing message."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; choose one of {', '.join(TEMPLATES)}")
    if name == CHAT and not has_chat_template(tokenizer):
        raise ValueError("template 'chat' needs a tokenizer with a chat template")
    return name


def transcript(system: str, history: Sequence[Turn]) -> str:
    """Earlier turns as plain text, for templates that have no notion of turns."""
    lines = [f"System: {system}"] if system else []
    lines += [f"{turn.role.capitalize()}: {turn.content}" for turn in history]
    return "\n".join(lines)


def user_message(instruction: str, input_text: str) -> str:
    """The last user turn under `chat`: the instruction, then its input after a blank line."""
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def render_text(
    name: str, instruction: str, input_text: str = "", system: str = "", history: Sequence[Turn] = ()
) -> str:
    """Prompt text of a text template (alpaca / vicuna / plain), earlier turns as a transcript."""
    with_input, no_input = _TEXT_TEMPLATES[name]
    prefix = transcript(system, history)
    instruction = f"{prefix}\n\n{instruction}" if prefix else instruction
    if input_text:
        return with_input.format_map({"instruction": instruction, "input": input_text})
    return no_input.format_map({"instruction": instruction})


def chat_messages(instruction: str, input_text: str = "", system: str = "", history: Sequence[Turn] = ()) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": turn.role, "content": turn.content} for turn in history]
    messages.append({"role": "user", "content": user_message(instruction, input_text)})
    return messages


def _as_ids(encoded: Any) -> list[int]:
    """apply_chat_template returns a list or (transformers 5) a BatchEncoding; take the ids."""
    if hasattr(encoded, "keys") and "input_ids" in encoded:
        encoded = encoded["input_ids"]
    if hasattr(encoded, "tolist"):
        encoded = encoded.tolist()
    return [int(i) for i in encoded]


def prompt_ids(
    tokenizer: Any,
    name: str,
    instruction: str,
    input_text: str = "",
    system: str = "",
    history: Sequence[Turn] = (),
) -> list[int]:
    """Prompt ids with the tokenizer's special tokens, ready for the scored ids to be appended."""
    if name == CHAT:
        messages = chat_messages(instruction, input_text, system, history)
        return _as_ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))
    text = render_text(name, instruction, input_text, system, history)
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def chat_response_header(tokenizer: Any) -> str:
    """What add_generation_prompt appends (e.g. '<|im_start|>assistant\\n')."""
    messages = [{"role": "user", "content": "x"}]
    opened = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    closed = tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)
    return opened[len(closed) :] if opened.startswith(closed) else ""


def special_id(tokenizer: Any, which: str) -> int | None:
    value = getattr(tokenizer, f"{which}_token_id", None)
    return int(value) if value is not None else None


def start_ids(tokenizer: Any, name: str, start_token: str) -> list[int]:
    """Context of the unconditioned pass: one BOS (else EOS), one EOS, or the response header.

    BOS is the default for parity with the Llama family, whose tokenizer adds it.
    """
    bos, eos = special_id(tokenizer, "bos"), special_id(tokenizer, "eos")
    if start_token == "bos" and (bos is not None or eos is not None):
        return [bos if bos is not None else eos]
    if start_token == "eos" and eos is not None:
        return [eos]
    if start_token == "header":
        if name == CHAT:
            ids = list(tokenizer(chat_response_header(tokenizer), add_special_tokens=False)["input_ids"])
        else:
            header = RESPONSE_HEADERS[name]
            ids = list(tokenizer(header, add_special_tokens=True)["input_ids"]) if header else []
        if ids:
            return ids
        raise ValueError(f"template {name!r} has no response header; use start token bos or eos")
    if start_token not in START_TOKENS:
        raise ValueError(f"unknown start token {start_token!r}; choose one of {', '.join(START_TOKENS)}")
    raise ValueError(f"the tokenizer has no {start_token} token")


def _render_chat_probe(tokenizer: Any, probe: dict) -> str:
    """Render a probe conversation; templates that refuse a system turn or history get a simpler one."""
    from jinja2.exceptions import TemplateError

    simpler = [probe, {**probe, "system": ""}, {**probe, "system": "", "history": ()}]
    for attempt in simpler[:-1]:
        try:
            return tokenizer.apply_chat_template(chat_messages(**attempt), add_generation_prompt=True, tokenize=False)
        except TemplateError:
            continue
    return tokenizer.apply_chat_template(chat_messages(**simpler[-1]), add_generation_prompt=True, tokenize=False)


def template_hash(tokenizer: Any, name: str, start_token: str) -> str:
    """Hash of what the template renders (part of the cache key): a probe prompt, its reverse, the start."""
    probe = dict(instruction="Q", input_text="I", system="S", history=(Turn("user", "u"), Turn("assistant", "a")))
    if name == CHAT:
        rendered = [_render_chat_probe(tokenizer, probe), getattr(tokenizer, "chat_template", "")]
    else:
        rendered = [render_text(name, **probe)]
    rendered += [REVERSE_PROMPT, start_ids(tokenizer, name, start_token)]
    return content_hash([name, rendered])
