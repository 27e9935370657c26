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

Choose = Callable[[Sequence[dict], Sequence[str]], list[float]]


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
    forward = list(choose(judge_messages(instruction, candidate, reference), OPTIONS))
    backward = list(choose(judge_messages(instruction, reference, candidate), OPTIONS))
    return verdict(forward, backward), forward, backward


def judge_summary(verdicts: Sequence[int]) -> dict[str, float | int]:
    n = len(verdicts)
    wins, losses = sum(v == WIN for v in verdicts), sum(v == LOSS for v in verdicts)
    return {
        "wins": wins,
        "ties": n - wins - losses,
        "losses": losses,
        "n": n,
        "score": (wins - losses) / n if n else float("nan"),
    }
