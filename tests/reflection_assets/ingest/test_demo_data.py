"""The bundled demo sets load cleanly and stay apart."""

import re

from reflection_assets.demo_data import DEMO_EVAL_PATH, DEMO_TRAIN_PATH
from reflection_assets.ingest.readers import read_dataset


def test_train_set_loads_without_rejections():
    result = read_dataset(DEMO_TRAIN_PATH)
    assert result.format == "alpaca" and not result.rejected
    assert len(result.accepted) >= 60
    assert sum(1 for p in result.accepted if p.input) >= 15


def test_eval_set_is_held_out_and_has_gsm8k_style_answers():
    train = read_dataset(DEMO_TRAIN_PATH).accepted
    held_out = read_dataset(DEMO_EVAL_PATH)
    assert not held_out.rejected and len(held_out.accepted) >= 30
    assert not {p.instruction for p in train} & {p.instruction for p in held_out.accepted}
    assert not {p.row_id for p in train} & {p.row_id for p in held_out.accepted}
    gsm = [p for p in held_out.accepted if re.search(r"\n#### -?\d+(\.\d+)?$", p.output)]
    assert len(gsm) >= 10
