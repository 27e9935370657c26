"""The paper's pairwise judge: the teacher compares two answers in both orders.

The choice is read from the probabilities of the options "1" and "2" (a small judge rarely writes
a parsable verdict). A verdict that flips with the order is position bias, so it counts as a tie;
the score of an arm is (wins - losses) / n.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

WIN, TIE, LOSS = 1, 0, -1
OPTIONS = ("1", "2")
JUDGE_PROMPT_VERSION = "1"
JUDGE_SYSTEM = "You are a careful judge of answers to instructions. Reply with 1 or 2 only."

Choose = Callable[[Sequence[dict], Sequence[str]], list[float]]  # option probabilities of one question
# Option probabilities of many questions ((messages, options) each) in one call: a local judge batches them.
ChooseMany = Callable[[Sequence[tuple[Sequence[dict], Sequence[str]]]], list[list[float]]]


def one_by_one(choose: Choose) -> ChooseMany:
    """A ChooseMany that asks `choose` once per question."""
    return lambda asks: [list(choose(messages, options)) for messages, options in asks]


def judge_messages(instruction: str, first: str, second: str) -> list[dict]:
    prompt = (
        f"Instruction:\n{instruction}\n\nAnswer 1:\n{first}\n\nAnswer 2:\n{second}\n\n"
        "Which answer follows the instruction better: helpful, relevant, accurate and detailed? Reply 1 or 2."
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": prompt}]


def verdict(p_candidate_first: Sequence[float], p_candidate_second: Sequence[float]) -> int:
    """WIN when the candidate is preferred in both orders, LOSS when the other answer is, else TIE.

    `p_candidate_first`: option probabilities with the candidate shown as answer 1;
    `p_candidate_second`: with the candidate shown as answer 2.
    """
    candidate_first, other_first = (
        p_candidate_first[0] > p_candidate_first[1],
        p_candidate_first[1] > p_candidate_first[0],
    )
    candidate_second, other_second = (
        p_candidate_second[1] > p_candidate_second[0],
        p_candidate_second[0] > p_candidate_second[1],
    )
    if candidate_first and candidate_second:
        return WIN
    if other_first and other_second:
        return LOSS
    return TIE


def position_flipped(p_candidate_first: Sequence[float], p_candidate_second: Sequence[float]) -> bool:
    """The judge preferred the same position in both orders, so its choice follows the order, not the answers."""
    first_wins_forward = p_candidate_first[0] > p_candidate_first[1]
    first_wins_backward = p_candidate_second[0] > p_candidate_second[1]
    return first_wins_forward == first_wins_backward


def judge_pair(
    choose: Choose, instruction: str, candidate: str, reference: str
) -> tuple[int, list[float], list[float]]:
    """Ask in both orders; return the verdict for the candidate and both probability pairs."""
    return judge_pairs(one_by_one(choose), [(instruction, candidate, reference)])[0]


def judge_pairs(
    choose_many: ChooseMany, pairs: Sequence[tuple[str, str, str]]
) -> list[tuple[int, list[float], list[float]]]:
    """judge_pair for many (instruction, candidate, reference) at once: both orders of every pair go to
    `choose_many` together (a local judge runs them as batches, not one forward per question)."""
    asks: list[tuple[Sequence[dict], Sequence[str]]] = []
    for instruction, candidate, reference in pairs:
        asks.append((judge_messages(instruction, candidate, reference), OPTIONS))
        asks.append((judge_messages(instruction, reference, candidate), OPTIONS))
    probabilities = choose_many(asks)
    forwards, backwards = probabilities[0::2], probabilities[1::2]
    return [(verdict(f, b), list(f), list(b)) for f, b in zip(forwards, backwards)]
