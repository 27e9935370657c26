from pathlib import Path

from reflection_assets.paths import shown_path


def test_a_path_under_the_working_directory_is_shown_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shown_path(tmp_path / "data" / "inbox" / "new.jsonl") == str(Path("data/inbox/new.jsonl"))
    assert shown_path("data/inbox/new.jsonl") == str(Path("data/inbox/new.jsonl"))


def test_a_path_elsewhere_is_shown_as_given(tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert shown_path(tmp_path / "elsewhere.jsonl") == str(tmp_path / "elsewhere.jsonl")
