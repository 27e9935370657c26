"""`reflection-tuning experiment`: the sample file it runs, and clear refusals for user mistakes."""

import json

from reflection_assets.cli import main
from reflection_assets.commands.experiment import evaluation_source, opening_lines, sample_file
from reflection_assets.demo_data import DEMO_TRAIN_PATH
from reflection_assets.ingest import read_dataset


def test_sample_file_keeps_the_first_pairs_whole(tmp_path):
    path, rows, read, rejected, *_ = sample_file(str(DEMO_TRAIN_PATH), 5, tmp_path)
    assert (read, rejected) == (68, {})
    assert rows == 5
    lines = [json.loads(line) for line in open(path)]
    assert len(lines) == 5
    original = read_dataset(str(DEMO_TRAIN_PATH)).accepted[:5]
    again = read_dataset(path).accepted
    assert [p.content_id() for p in again] == [p.content_id() for p in original]  # same rows, same ids


def test_held_out_pairs_come_from_the_same_source_after_the_sample_and_share_no_content(tmp_path):
    source = tmp_path / "pairs.jsonl"
    rows = [{"instruction": f"Q{k}", "input": "", "output": f"A{k}"} for k in range(6)]
    rows += [{"instruction": "Q1", "input": "", "output": "another answer"}]  # a sampled prompt again
    rows += [{"instruction": "Q9", "input": "", "output": "A2"}]  # a sampled answer again
    rows += [{"instruction": f"Q{k}", "input": "", "output": f"A{k}"} for k in range(10, 14)]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    sample = sample_file(str(source), 4, tmp_path / "out", eval_rows=3)
    assert sample.rows == 4 and sample.heldout_rows == 3
    held = [json.loads(line) for line in open(sample.heldout_path)]
    assert [h["instruction"] for h in held] == ["Q4", "Q5", "Q10"]
    assert sample_file(str(source), 4, tmp_path / "out2").heldout_path == ""  # not asked: none


def test_sample_file_keeps_system_prompts_and_turns(tmp_path):
    source = tmp_path / "chat.jsonl"
    chat = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
        ]
    }
    source.write_text(json.dumps(chat) + "\n")
    path, rows, *_ = sample_file(str(source), 10, tmp_path / "out")
    (pair,) = read_dataset(path).accepted
    (original,) = read_dataset(str(source)).accepted
    assert rows == 1 and pair.content_id() == original.content_id() and pair.system == "Be brief."


def test_no_data_is_a_clear_refusal(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert main(["experiment"]) == 2
    assert "REFLECTION_DATA" in capsys.readouterr().err


def test_unreadable_data_names_the_file(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    bad = tmp_path / "cut.json"
    bad.write_text('[{"instruction": "a", "output": "b"}, {"instr')
    assert main(["experiment", "--source", str(bad), "--rows", "3"]) == 2
    assert "cut.json" in capsys.readouterr().err


def test_the_teacher_label_keeps_credentials_out_of_the_report():
    from reflection_assets.commands.experiment import teacher_label

    served = {"REFLECTION_TEACHER_BASE_URL": "https://user:s3cret@llm.example/v1", "REFLECTION_TEACHER_MODEL": "m"}
    assert teacher_label(served) == "https://llm.example/v1 (m)"
    assert teacher_label({}) == "in-process bundled"


def test_the_sources_rejected_rows_are_counted_not_dropped(tmp_path):
    source = tmp_path / "mixed.jsonl"
    good = {"instruction": "Name a colour.", "output": "Blue."}
    source.write_text(json.dumps(good) + "\n" + '{"instruction": "no answer"}\n' + "not json\n")
    sample = sample_file(str(source), 10, tmp_path / "out")
    assert sample.rows == 1 and sample.source_rows_read == 3
    assert sample.source_rejected == {"invalid_json": 1, "missing_field": 1}


def test_the_scope_names_where_the_evaluation_items_come_from(monkeypatch, tmp_path):
    monkeypatch.delenv("REFLECTION_EVAL_FILE", raising=False)
    sample = sample_file(str(DEMO_TRAIN_PATH), 5, tmp_path, eval_rows=3)
    eval_file, sentence = evaluation_source(sample, str(DEMO_TRAIN_PATH))
    assert eval_file == sample.heldout_path
    assert sentence.endswith(f"3 pairs of {DEMO_TRAIN_PATH} the sample did not take, disjoint by content")

    no_heldout = sample_file(str(DEMO_TRAIN_PATH), 5, tmp_path / "all")
    assert "NOT from this source" in evaluation_source(no_heldout, str(DEMO_TRAIN_PATH))[1]

    chosen = tmp_path / "mine.jsonl"
    monkeypatch.setenv("REFLECTION_EVAL_FILE", str(chosen))
    assert evaluation_source(sample, str(DEMO_TRAIN_PATH)) == (str(chosen), f"{chosen} (REFLECTION_EVAL_FILE)")

    lines = opening_lines(str(DEMO_TRAIN_PATH), sample, "demo-5", {"evaluation items": sentence}).splitlines()
    assert lines[0] == (
        f"reflection-tuning experiment: the first 5 accepted rows of {DEMO_TRAIN_PATH} "
        f"({sample.source_rows_read} read, 0 rejected {{}}) as partition 'demo-5'"
    )
    assert lines[1] == f"  evaluation items: {sentence}"
