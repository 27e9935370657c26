from hypothesis import given
from hypothesis import strategies as st

from reflection_assets.scoring.prefixes import common_prefix_length, prefix_groups

SYSTEM = tuple(range(100, 120))  # a 20-token "system turn" every templated prompt starts with
REVERSE = SYSTEM + tuple(range(200, 215))  # the reverse prompt adds 15 more shared tokens


def test_common_prefix_length():
    assert common_prefix_length((1, 2, 3), (1, 2, 4)) == 2
    assert common_prefix_length((1, 2), (1, 2, 3)) == 2
    assert common_prefix_length((), (1,)) == 0


def test_two_templates_become_two_groups_with_their_own_prefix_and_the_rest_stay_plain():
    forward = [SYSTEM + (i, i + 1) for i in range(10)]
    reverse = [REVERSE + (i,) for i in range(10)]
    alone = [(1,), (1,), (2,)]
    contexts = forward + reverse + alone
    groups = prefix_groups(contexts, min_length=8, min_saved=16)
    by_length = {g.length: sorted(g.members) for g in groups if g.length}
    assert by_length == {20: list(range(10)), 35: list(range(10, 20))}  # split beats one 20-token group
    assert sorted(i for g in groups for i in g.members) == list(range(len(contexts)))


def test_a_prefix_never_covers_a_whole_context():
    contexts = [SYSTEM, SYSTEM + (1,), SYSTEM + (2,)]
    for group in prefix_groups(contexts, min_length=4, min_saved=4):
        for member in group.members:
            assert group.length <= len(contexts[member]) - 1


def test_short_or_rare_prefixes_are_not_worth_a_group():
    assert all(g.length == 0 for g in prefix_groups([(1, 2, 3, 4, 5), (1, 2, 3, 4, 6)], min_length=8, min_saved=0))
    assert all(g.length == 0 for g in prefix_groups([SYSTEM + (1,), SYSTEM + (2,)], min_length=8, min_saved=64))


def test_nested_prefixes_do_not_recurse_without_bound():
    contexts = [tuple(range(n)) for n in range(1, 400)]  # a, ab, abc, ...: the worst case for the split
    groups = prefix_groups(contexts, min_length=2, min_saved=2)
    assert sorted(i for g in groups for i in g.members) == list(range(len(contexts)))


@given(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=12), max_size=40))
def test_every_index_once_and_every_group_really_shares_its_prefix(raw):
    contexts = [tuple(c) for c in raw]
    groups = prefix_groups(contexts, min_length=2, min_saved=2)
    assert sorted(i for g in groups for i in g.members) == list(range(len(contexts)))
    for group in groups:
        if group.length:
            first = contexts[group.members[0]][: group.length]
            assert all(contexts[m][: group.length] == first and len(contexts[m]) > group.length for m in group.members)


def test_two_different_prompts_of_the_same_length_stay_two_groups():
    other = tuple(range(300, 320))
    contexts = [SYSTEM + (i,) for i in range(5)] + [other + (i,) for i in range(5)]
    groups = [g for g in prefix_groups(contexts, min_length=8, min_saved=16) if g.length]
    assert sorted(sorted(g.members) for g in groups) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert all(g.length == 20 for g in groups)
