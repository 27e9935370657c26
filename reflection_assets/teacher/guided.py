"""Guided generation: the teacher writes the layout even when it is too small to follow it.

The assistant turn is opened step by step: a bounded critique first (the method's critique step
is kept), then each marker is appended by us and the teacher writes only the section's content,
up to [End]. Backends run the steps; this module only plans them and stitches the text.
"""

from __future__ import annotations

from dataclasses import dataclass

from reflection_assets.reflection70b import guided_markers
from reflection_assets.teacher.prompts import BETTER_ANSWER, END, NEW_ANSWER, NEW_INSTRUCTION
from reflection_assets.teacher.types import FORMAT, INSTRUCTION, RESPONSE, GuidePlan, GuideStep, Stage


def instruction_plan(critique_tokens: int, section_tokens: int) -> GuidePlan:
    """Critique, then [New Instruction] ... [End], then [New Answer] ... [End].

    A section also ends where the teacher writes another marker itself (as the parser reads it),
    so a small teacher that skips [End] still gets its next section.
    """
    return GuidePlan(
        steps=(
            GuideStep("", critique_tokens, stop=(NEW_INSTRUCTION,), required_stop=False),
            GuideStep(f"\n\n{NEW_INSTRUCTION}\n", section_tokens, stop=(END, NEW_ANSWER, NEW_INSTRUCTION)),
            GuideStep(f"\n{END}\n{NEW_ANSWER}\n", section_tokens, stop=(END, NEW_INSTRUCTION, NEW_ANSWER)),
        ),
        suffix=f"\n{END}",
    )


def response_plan(critique_tokens: int, section_tokens: int) -> GuidePlan:
    """Critique, then [Better Answer] ... [End]."""
    return GuidePlan(
        steps=(
            GuideStep("", critique_tokens, stop=(BETTER_ANSWER,), required_stop=False),
            GuideStep(f"\n\n{BETTER_ANSWER}\n", section_tokens, stop=(END, BETTER_ANSWER)),
        ),
        suffix=f"\n{END}",
    )


def format_plan(section_tokens: int) -> GuidePlan:
    """Reflection-70B layout: <thinking> ... </thinking> (reflections inside), then <output> ... </output>."""
    thinking, output = guided_markers()
    return GuidePlan(
        steps=(
            GuideStep(thinking.prefix, section_tokens, stop=(thinking.stop,)),
            GuideStep(f"\n{thinking.stop}{output.prefix}", section_tokens, stop=(output.stop,)),
        ),
        suffix=f"\n{output.stop}",
    )


def plan_for(stage: Stage, critique_tokens: int, section_tokens: int) -> GuidePlan:
    if stage == INSTRUCTION:
        return instruction_plan(critique_tokens, section_tokens)
    if stage == RESPONSE:
        return response_plan(critique_tokens, section_tokens)
    if stage == FORMAT:
        return format_plan(section_tokens)
    raise ValueError(f"unknown reflection stage {stage!r}")


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """Text before the first stop string, and whether one was found."""
    hits = [i for s in stops if (i := text.find(s)) >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


@dataclass
class GuidedState:
    """The assistant turn written so far for one request, and whether the plan goes on."""

    text: str = ""
    finished: bool = False
    truncated: bool = False

    def prefix_for(self, step: GuideStep) -> str:
        """The assistant-turn prefix the backend continues for `step`."""
        return (self.text + step.prefix).rstrip(" ")

    def absorb(self, step: GuideStep, generated: str, hit_length: bool) -> None:
        """Add one step's continuation; a section that ran out of tokens ends the plan."""
        piece, found = cut_at_stop(generated, step.stop)
        # The teacher often closes its critique itself; a cut at the stop string is the expected end.
        self.text = self.prefix_for(step) + piece.rstrip()
        if step.required_stop and not found and hit_length:
            self.truncated = self.finished = True

    def close(self, plan: GuidePlan) -> str:
        if not self.truncated:
            self.text += plan.suffix
        self.finished = True
        return self.text
