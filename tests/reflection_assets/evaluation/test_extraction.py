import pytest

from reflection_assets.evaluation.extraction import extract_number, output_part, reference_number


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3 x 12 = 36, 36 - 9 = 27\n#### 27", "27"),
        ("#### 1,234", "1234"),
        ("The answer is $270.", "270"),
        ("First 45 + 90 = 135 cupcakes, so the total is 270 dollars.", "270"),
        ("So she has -4 left.", "-4"),
        ("It costs $30.00 on sale.", "30"),
        ("About 3.110 miles.", "3.11"),
        ("Result: 12\nCheck: 12 x 12 = 144 ... wait, the answer is 12.", "12"),
        ("I am not sure.", None),
        ("", None),
    ],
)
def test_numbers_are_extracted_from_messy_outputs(text, expected):
    assert extract_number(text) == expected


def test_a_marker_wins_over_later_numbers():
    assert extract_number("#### 8\nThat was 3 steps.") == "8"


def test_the_reference_of_a_gsm8k_answer_needs_the_marker():
    assert reference_number("3 x 4 = 12\n#### 12") == "12"
    assert reference_number("3 x 4 = 12") is None


def test_only_the_output_part_is_scored_in_reflection_style():
    text = "<thinking>2+2 is 5</thinking><reflection>no, 4</reflection><output>The answer is 4.</output>"
    assert output_part(text) == "The answer is 4."
    assert output_part("<thinking>x</thinking><output>cut off") == "cut off"
    assert output_part("no tags at all") == "no tags at all"
