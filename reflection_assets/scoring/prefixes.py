"""Shared prompt prefixes: which sequences can reuse one prefix's keys and values.

Every templated prompt starts with the same tokens (a chat template's system turn, the Alpaca
preamble, the reverse prompt's opening), often 20-50 tokens of a 150-token sequence. A causal model
computes those tokens identically in every sequence, so running them once per group and handing
their keys and values to each batch saves that share of the whole forward pass.

Grouping: sort the contexts, take the common prefix of each neighbouring pair, and split the
sorted run into groups so that the tokens saved, (members - 1) x prefix length, is as large as a
walk of the Cartesian tree of those prefix lengths can make it (shortest shared prefixes first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MIN_PREFIX_TOKENS = 8  # shorter prefixes save less than the extra pass and the smaller batches cost
MIN_SAVED_TOKENS = 64  # a group must save this much to be worth batching apart from the rest
MAX_SPLIT_DEPTH = 64  # bounds the work on pathological nestings (a, ab, abc, ...)


@dataclass(frozen=True)
class PrefixGroup:
    """Indices (into the caller's list) that share their first `length` context tokens."""

    length: int
    members: tuple[int, ...]


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def prefix_groups(
    contexts: Sequence[Sequence[int]], min_length: int = MIN_PREFIX_TOKENS, min_saved: int = MIN_SAVED_TOKENS
) -> list[PrefixGroup]:
    """Partition indices of `contexts` into groups with a shared prefix (length 0: no sharing).

    A prefix never covers a whole context: the last context token must be computed with the rest
    of its sequence, because its output predicts the first scored token.
    """
    order = sorted(range(len(contexts)), key=lambda i: tuple(contexts[i]))
    usable = [max(0, len(contexts[i]) - 1) for i in order]
    shared = [
        min(common_prefix_length(contexts[a], contexts[b]), usable[k], usable[k + 1])
        for k, (a, b) in enumerate(zip(order, order[1:]))
    ]
    if not order:
        return []
    groups: list[PrefixGroup] = []
    for length, runs in _split(shared, 0, len(order) - 1, min_length, min_saved):
        groups.append(PrefixGroup(length, tuple(order[i] for lo, hi in runs for i in range(lo, hi + 1))))
    return groups


Ranges = list[tuple[int, int]]  # inclusive (lo, hi) runs of the sorted order


def _split(shared: list[int], lo: int, hi: int, min_length: int, min_saved: int) -> list[tuple[int, Ranges]]:
    """Groups as (prefix length, runs of the sorted order), maximising the tokens saved.

    At each node of the Cartesian tree (a run whose shortest neighbour prefix is m, cut into parts
    where it is m), every part either joins one group that shares m tokens or keeps its own best
    grouping: it joins when that saves more (size x m against its own saving).
    """
    Solution = tuple[int, list[tuple[int, Ranges]]]
    best: dict[tuple[int, int], Solution] = {}
    ungrouped = lambda p, q: (0, [(0, [(i, i)]) for i in range(p, q + 1)])  # noqa: E731
    stack: list[tuple[int, int, int, bool]] = [(lo, hi, 0, False)]  # an iterative post-order walk
    while stack:
        a, b, depth, expanded = stack.pop()
        if a == b:
            best[(a, b)] = ungrouped(a, b)
            continue
        shortest = min(shared[a:b])
        cuts = [k for k in range(a, b) if shared[k] == shortest]
        parts = list(zip([a] + [k + 1 for k in cuts], cuts + [b]))
        if not expanded and depth < MAX_SPLIT_DEPTH:
            stack.append((a, b, depth, True))
            stack.extend((p, q, depth + 1, False) for p, q in parts)
            continue
        # Past the depth bound the parts were not solved: they count as ungrouped.
        own = [best.pop(part) if part in best else ungrouped(*part) for part in parts]
        joining = {i for i, (p, q) in enumerate(parts) if (q - p + 1) * shortest >= own[i][0]}
        members = sum(parts[i][1] - parts[i][0] + 1 for i in joining)
        group_saving = (members - 1) * shortest  # the prefix itself still runs once
        solo = sum(saving for saving, _ in own)
        with_group = group_saving + sum(own[i][0] for i in range(len(parts)) if i not in joining)
        if members >= 2 and shortest >= min_length and group_saving >= min_saved and with_group > solo:
            groups = [(shortest, [parts[i] for i in sorted(joining)])]
            groups += [g for i in range(len(parts)) if i not in joining for g in own[i][1]]
            best[(a, b)] = (with_group, groups)
        else:
            best[(a, b)] = (solo, [g for _, gs in own for g in gs])
    return best[(lo, hi)][1]
