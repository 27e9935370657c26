from reflection_assets.evaluation.contamination import contaminated_items, ngrams

ITEM = "A tank holds 120 litres of water and it leaks 4 litres per hour for 9 hours in a row"


def test_a_shared_13_gram_marks_the_item():
    rewrite = "Rewritten: a tank holds 120 litres of water, and it leaks 4 litres per hour for 9 hours. Solve."
    assert contaminated_items({"tank": ITEM, "other": "Name a planet."}, [rewrite]) == {
        "tank": 5
    }  # 17 shared words: five 13-grams


def test_twelve_shared_words_are_not_enough():
    twelve = " ".join(ITEM.split()[:12])
    assert len(ngrams(twelve)) == 0
    assert contaminated_items({"tank": ITEM}, [twelve + " something else entirely"]) == {}


def test_score_rows_are_flagged_and_an_empty_training_set_flags_nothing():
    import pandas as pd

    from reflection_assets.evaluation.contamination import flag_contaminated
    from reflection_assets.evaluation.suites import EvalItem

    item = EvalItem("heldout_nll", ITEM, "", "Eight.")
    scores = pd.DataFrame({"item_id": [item.item_id, "other"], "instruction": [ITEM, "Hi."], "reference": ["", ""]})
    assert flag_contaminated(scores, {"heldout_nll": [item]}, pd.DataFrame()) == {}
    assert not scores["contaminated"].any()
    training = pd.DataFrame({"instruction": ["Copy: " + ITEM], "input": [None], "output": ["x"]})
    assert set(flag_contaminated(scores, {"heldout_nll": [item]}, training)) == {item.item_id}
    assert scores["contaminated"].tolist() == [True, False]
