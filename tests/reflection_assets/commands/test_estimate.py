"""`reflection-tuning estimate` end to end through the project CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reflection_assets.cli import main


def write_pairs(path: Path, n: int) -> Path:
    path.write_text(
        "".join(json.dumps({"instruction": f"Task {i}", "input": "", "output": f"Answer {i}"}) + "\n" for i in range(n))
    )
    return path


def test_estimate_prints_calls_and_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REFLECTION_TEACHER_BASE_URL", "http://127.0.0.1:9/v1")  # never contacted
    monkeypatch.setenv("REFLECTION_TEACHER_MODEL", "served-model")
    data = write_pairs(tmp_path / "pairs.jsonl", 4)
    code = main(
        ["estimate", "--input", str(data), "--cache", str(tmp_path / "none.duckdb"), "--max-new-tokens", "50", "--json"]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["rows"], out["calls"], out["max_completion_tokens"], out["model"]) == (4, 4, 200, "served-model")
    assert not (tmp_path / "none.duckdb").exists()  # estimating creates nothing

    assert main(["estimate", "--input", str(data), "--stage", "response", "--guided", "--max-calls", "2"]) == 0
    text = capsys.readouterr().out
    assert "calls: 4 (8 requests)" in text and "BEYOND the caps" in text


def test_estimate_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--input", str(tmp_path / "missing.jsonl")]) == 2
    assert "error:" in capsys.readouterr().err
