from reflection_assets.evaluation.judge import LOSS, TIE, WIN, judge_pair


def position_biased(messages, options):
    """Always prefers whatever is shown first, whatever it says."""
    return [0.9, 0.1]


def prefers(word):
    def choose(messages, options):
        text = messages[-1]["content"]
        first = text.split("Answer 1:\n", 1)[1].split("\n\nAnswer 2:", 1)[0]
        return [0.8, 0.2] if word in first else [0.2, 0.8]

    return choose


def test_a_position_biased_judge_yields_ties():
    verdicts = [judge_pair(position_biased, "Say hi.", cand, ref)[0] for cand, ref in [("hi", "hello"), ("x", "y")]]
    assert verdicts == [TIE, TIE]


def test_a_consistent_judge_gives_wins_and_losses():
    choose = prefers("good")
    assert judge_pair(choose, "Q", "a good answer", "a poor answer")[0] == WIN
    assert judge_pair(choose, "Q", "a poor answer", "a good answer")[0] == LOSS


def test_an_undecided_judge_is_a_tie():
    assert judge_pair(lambda m, o: [0.5, 0.5], "Q", "a", "b")[0] == TIE


def test_a_judge_that_prefers_one_position_in_both_orders_flips():
    from reflection_assets.evaluation.judge import position_flipped

    assert position_flipped([0.9, 0.1], [0.8, 0.2])  # "1" both times: the order decided
    assert position_flipped([0.1, 0.9], [0.3, 0.7])  # "2" both times
    assert not position_flipped([0.9, 0.1], [0.2, 0.8])  # the candidate both times
    assert not position_flipped([0.2, 0.8], [0.7, 0.3])  # the other answer both times
