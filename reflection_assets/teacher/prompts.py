"""Teacher prompts for the two reflection stages, in this project's own words.

PROMPT_VERSION is part of every llm_calls cache key: change it whenever a prompt, a marker or
the way a pair is rendered changes, so old answers are never reused for a new prompt.
"""

from __future__ import annotations

from reflection_assets.reflection70b import build_reflection_format_prompt
from reflection_assets.schema import Pair
from reflection_assets.teacher.types import FORMAT, INSTRUCTION, RESPONSE, STAGES, Message, Stage

PROMPT_VERSION = "reflect-v2"

NEW_INSTRUCTION = "[New Instruction]"
NEW_ANSWER = "[New Answer]"
BETTER_ANSWER = "[Better Answer]"
END = "[End]"

SYSTEM_PROMPT = (
    "You review and improve training data for instruction-following assistants. "
    "You are exact about the requested output layout."
)

INSTRUCTION_TASK = f"""Above is an instruction given to an AI assistant and the answer it received.

Review the instruction first. Say whether it is complex enough, whether it gives enough detail, what \
knowledge it requires, whether anything in it is ambiguous, and how much reasoning it demands.
Then review the answer: is it helpful, relevant to the instruction, accurate, and detailed enough?

After the review, write an improved instruction that fixes those weaknesses and is more demanding, \
together with an excellent answer to it. The new instruction must stand on its own: copy into it any \
text, data or context it needs, because the reader will not see the original.

End your reply with the marker {NEW_INSTRUCTION} on its own line, then your new instruction, then the \
marker {END}; then the marker {NEW_ANSWER} on its own line, then your answer to the new instruction, \
then the marker {END}. Write nothing after the last {END}."""

RESPONSE_TASK = f"""Above is an instruction given to an AI assistant and the answer it received.

Review the answer: is it helpful, relevant to the instruction, accurate, and detailed enough? \
Point out what is missing or wrong.

After the review, write a better answer to the same instruction.

End your reply with the marker {BETTER_ANSWER} on its own line, then your better answer, then the \
marker {END}. Write nothing after {END}."""


def fold_input(instruction: str, input_text: str) -> str:
    """One self-contained instruction: a row's separate `input` becomes part of it."""
    instruction, input_text = instruction.strip(), input_text.strip()
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def render_pair(pair: Pair) -> str:
    """The pair as the teacher sees it, earlier turns and system prompt included.

    It comes before the task, so the last thing a small teacher reads is the layout to write.
    """
    parts: list[str] = []
    if pair.system.strip():
        parts.append(f"### System prompt the assistant had\n{pair.system.strip()}")
    if pair.history:
        transcript = "\n".join(f"{t.role.capitalize()}: {t.content.strip()}" for t in pair.history)
        parts.append(f"### Earlier conversation\n{transcript}")
    parts.append(f"### Instruction\n{fold_input(pair.instruction, pair.input)}")
    parts.append(f"### Answer\n{pair.output.strip()}")
    return "\n\n".join(parts)


def instruction_messages(pair: Pair) -> list[Message]:
    """Messages asking to criticise the pair and write a new instruction and answer."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{render_pair(pair)}\n\n{INSTRUCTION_TASK}"},
    ]


def response_messages(pair: Pair) -> list[Message]:
    """Messages asking to criticise the answer of the current pair and write a better one."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{render_pair(pair)}\n\n{RESPONSE_TASK}"},
    ]


def messages_for(stage: Stage, pair: Pair) -> list[Message]:
    if stage == INSTRUCTION:
        return instruction_messages(pair)
    if stage == RESPONSE:
        return response_messages(pair)
    if stage == FORMAT:
        return build_reflection_format_prompt(pair)
    raise ValueError(f"unknown reflection stage {stage!r}; expected one of {STAGES}")
