import pytest

from reflection_assets.evaluation.checkers import run_check

CASES = [
    ({"kind": "lowercase"}, "all quiet here.", "Not all quiet."),
    ({"kind": "max_words", "n": 5}, "one two three four five", "one two three four five six"),
    ({"kind": "min_words", "n": 4}, "one two three four", "one two three"),
    ({"kind": "max_sentences", "n": 2}, "First one. Second one!", "One. Two. Three."),
    ({"kind": "bullet_count", "n": 3}, "Facts:\n- a\n- b\n* c", "- a\n- b"),
    ({"kind": "bullet_count", "n": 2}, "1. first\n2) second", "1. first"),
    ({"kind": "required_words", "words": ["blue", "quiet"]}, "A Blue sky, so quiet.", "A blue sky, so loud."),
    ({"kind": "forbidden_words", "words": ["the", "and"]}, "Lava flows; rocks melt.", "The lava flows."),
    ({"kind": "forbidden_words", "words": ["and"]}, "Sand dunes shift.", "Sun and sand."),  # 'sand' is not 'and'
    ({"kind": "valid_json"}, '{"topic": "rain", "summary": "wet"}', "{topic: rain}"),
    ({"kind": "valid_json"}, '```json\n{"a": 1}\n```', 'Here is JSON: {"a": 1}'),
    (
        {"kind": "ends_with", "phrase": "Is there anything else?"},
        "Done. Is there anything else?  ",
        "Is there anything else? Bye.",
    ),
    ({"kind": "paragraph_count", "n": 2}, "First part.\n\nSecond part.", "Only one paragraph.\nStill the same one."),
]


@pytest.mark.parametrize("check, passing, failing", CASES)
def test_each_checker_passes_and_fails(check, passing, failing):
    assert run_check(check, passing) is True
    assert run_check(check, failing) is False


def test_empty_answers_never_pass_the_permissive_checks():
    for check in ({"kind": "lowercase"}, {"kind": "max_words", "n": 5}, {"kind": "forbidden_words", "words": ["x"]}):
        assert run_check(check, "  ") is False


def test_an_unknown_check_is_named():
    with pytest.raises(ValueError, match="unknown check 'shout'"):
        run_check({"kind": "shout"}, "x")
