"""Optional Reflection-70B format: answers as <thinking> (with <reflection>) then <output>.

The one home of the format's markers, prompts and validator: the teacher (prompts, guided
steps, parsing) and the selection both import them from here. The selected answers are
rewritten by the teacher into this format; training then uses
REFLECTION_SYSTEM_PROMPT and evaluation scores only the <output> part (extract_output). A
rewrite that does not validate is dropped and the row keeps its plain answer, with the reason.

Validation rules (validate_reflection_format), chosen to keep training targets clean:
- exactly one <thinking>...</thinking>, then exactly one <output>...</output>, both closed, in
  that order, neither empty;
- <reflection>...</reflection> blocks may appear inside <thinking> or between </thinking> and
  <output>, never nested, never empty, never inside <output>;
- zero reflections are allowed by default: Reflection-70B's own prompt asks for a reflection only
  "if you detect that you made a mistake", and requiring one would push the teacher to invent
  mistakes (`require_reflection=True` demands at least one);
- nothing but whitespace outside the tags, since text there would be trained on yet not be part
  of the scored answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reflection_assets.schema import Pair

# Reflection-70B's published system prompt: the student is trained (and evaluated) with it.
REFLECTION_SYSTEM_PROMPT = (
    "You are a world-class AI system, capable of complex reasoning and reflection. Reason through "
    "the query inside <thinking> tags, and then provide your final response inside <output> tags. "
    "If you detect that you made a mistake in your reasoning at any point, correct yourself inside "
    "<reflection> tags."
)

REFLECTION_FORMAT_PROMPT_VERSION = "reflection_format.v1"  # part of the teacher-call cache key

TEACHER_SYSTEM_PROMPT = (
    "You rewrite answers into a reasoning format. First reason step by step inside "
    "<thinking></thinking>. Whenever you notice a mistake or a gap in your reasoning, correct it "
    "inside <reflection></reflection>, within the thinking or right after it. Then write the "
    "final answer, complete and self-contained, inside <output></output>. Write nothing outside "
    "these tags."
)

_TAG = re.compile(r"<(/?)(thinking|reflection|output)>")
# Validator states where free text is not allowed, and states a text must not end in.
_TEXT_NOT_ALLOWED = {
    "start": "text_before_thinking",
    "between": "text_between_thinking_and_output",
    "end": "text_after_output",
}
_UNFINISHED = {
    "start": "no_thinking",
    "thinking": "unclosed_thinking",
    "between": "no_output",
    "output": "unclosed_output",
}


@dataclass(frozen=True)
class GuidedSegment:
    """One guided-generation step: append `prefix` to the assistant turn, generate until `stop`."""

    prefix: str
    stop: str


def guided_markers() -> tuple[GuidedSegment, ...]:
    """The segments a teacher that can continue an assistant prefix is guided through.

    Open the assistant turn with "<thinking>\\n", generate until "</thinking>" (reflections are
    written freely inside it), append "\\n<output>\\n", generate until "</output>". Join the
    pieces with join_guided.
    """
    return (GuidedSegment("<thinking>\n", "</thinking>"), GuidedSegment("\n<output>\n", "</output>"))


def join_guided(pieces: Sequence[str]) -> str:
    """The full formatted text from the generated pieces of guided_markers()'s segments."""
    segments = guided_markers()
    if len(pieces) != len(segments):
        raise ValueError(f"expected {len(segments)} pieces, got {len(pieces)}")
    parts = []
    for seg, piece in zip(segments, pieces):
        body = piece[: -len(seg.stop)] if piece.endswith(seg.stop) else piece  # some servers keep the stop
        parts.append(seg.prefix + body.strip() + "\n" + seg.stop)
    return "".join(parts)


def _pair_fields(pair: Pair | Mapping[str, object]) -> tuple[str, str, str]:
    if isinstance(pair, Pair):
        return pair.instruction, pair.input, pair.output
    return tuple(str(pair.get(k, "") or "") for k in ("instruction", "input", "output"))  # type: ignore[return-value]


def build_reflection_format_prompt(pair: Pair | Mapping[str, object]) -> list[dict[str, str]]:
    """Chat messages asking the teacher to rewrite the pair's answer in the reflection format."""
    instruction, input_text, output = _pair_fields(pair)
    body = f"[Instruction]\n{instruction}\n\n"
    if input_text:
        body += f"[Input]\n{input_text}\n\n"
    body += (
        f"[Answer]\n{output}\n\n"
        "Rewrite the answer above in this format:\n"
        "<thinking>\nyour step-by-step reasoning, with <reflection>corrections</reflection> where "
        "you find a mistake\n</thinking>\n<output>\nthe final answer\n</output>\n"
        "Keep what is correct in the answer and fix what is wrong."
    )
    return [{"role": "system", "content": TEACHER_SYSTEM_PROMPT}, {"role": "user", "content": body}]


def _no_text(chunk: str) -> bool:
    return not chunk.strip()


def _has_text(chunk: str) -> bool:
    return bool(_TAG.sub("", chunk).strip())


def validate_reflection_format(text_: str, require_reflection: bool = False) -> tuple[bool, str]:
    """(True, "ok") when `text_` follows the format (see the module docstring), else (False, why)."""
    scan, pos = _FormatScan(text_), 0
    for m in _TAG.finditer(text_):
        closing, name = m.group(1) == "/", m.group(2)
        gap, pos = text_[pos : m.start()], m.end()
        why = scan.before_tag(gap, closing, name) or scan.tag(m, closing, name)
        if why:
            return False, why
    why = scan.finish(text_[pos:], require_reflection)
    return (False, why) if why else (True, "ok")


@dataclass
class _FormatScan:
    """The format's state machine over the tags in order; each step returns "" or the reason it fails."""

    text: str
    state: str = "start"  # start -> thinking -> between -> output -> end
    in_reflection: bool = False
    n_reflections: int = 0
    opened_at: int = 0
    reflection_at: int = 0

    def before_tag(self, gap: str, closing: bool, name: str) -> str:
        if not self.in_reflection and not _no_text(gap) and self.state in _TEXT_NOT_ALLOWED:
            return _TEXT_NOT_ALLOWED[self.state]
        if self.state == "output" and not (closing and name == "output"):
            return "tag_inside_output"
        if self.state == "end":
            return "multiple_output" if name == "output" and not closing else "text_after_output"
        return ""

    def tag(self, m: re.Match, closing: bool, name: str) -> str:
        if name == "reflection":
            return self._reflection(m, closing)
        if self.in_reflection:
            return "unclosed_reflection"
        return self._thinking(m, closing) if name == "thinking" else self._output(m, closing)

    def _reflection(self, m: re.Match, closing: bool) -> str:
        if self.state == "start":
            return "reflection_before_thinking"
        if not closing:
            if self.in_reflection:
                return "nested_reflection"
            self.in_reflection, self.reflection_at = True, m.end()
            return ""
        if not self.in_reflection:
            return "unexpected_close_reflection"
        if not _has_text(self.text[self.reflection_at : m.start()]):
            return "empty_reflection"
        self.in_reflection, self.n_reflections = False, self.n_reflections + 1
        return ""

    def _thinking(self, m: re.Match, closing: bool) -> str:
        if not closing:
            if self.state != "start":
                return "multiple_thinking"
            self.state, self.opened_at = "thinking", m.end()
        elif self.state != "thinking":
            return "unexpected_close_thinking"
        elif not _has_text(self.text[self.opened_at : m.start()]):
            return "empty_thinking"
        else:
            self.state = "between"
        return ""

    def _output(self, m: re.Match, closing: bool) -> str:
        if not closing:
            if self.state == "start":
                return "output_before_thinking"
            if self.state == "thinking":
                return "unclosed_thinking"
            self.state, self.opened_at = "output", m.end()
        elif self.state != "output":
            return "unexpected_close_output"
        elif _no_text(self.text[self.opened_at : m.start()]):
            return "empty_output"
        else:
            self.state = "end"
        return ""

    def finish(self, rest: str, require_reflection: bool) -> str:
        if self.in_reflection:
            return "unclosed_reflection"
        if self.state in _UNFINISHED:
            return _UNFINISHED[self.state]
        if not _no_text(rest):
            return "text_after_output"
        if require_reflection and self.n_reflections == 0:
            return "no_reflection"
        return ""


def extract_output(text_: str) -> str:
    """The answer to score in evaluation: the <output> part only.

    Unclosed <output> (a generation cut at max tokens): everything after it. No <output> at
    all: the text with <thinking>/<reflection> blocks (closed or not) and stray tags removed,
    i.e. what the model showed beyond its reasoning; "" when it never stopped thinking.
    """
    closed = re.search(r"<output>(.*?)</output>", text_, flags=re.S)
    if closed:
        return closed.group(1).strip()
    if "<output>" in text_:
        return _TAG.sub("", text_.split("<output>", 1)[1]).strip()
    stripped = re.sub(r"<(thinking|reflection)>.*?(</\1>|$)", "", text_, flags=re.S)
    return _TAG.sub("", stripped).strip()
