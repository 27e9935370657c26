import json
import subprocess
import sys
from pathlib import Path

import pytest

from reflection_assets.cli import main
from reflection_assets.scoring.engine import LossEngine
from support.tiny_lm import tiny_model, tiny_tokenizer

REPO = Path(__file__).resolve().parents[3]
FIELDS = [
    "id", "loss_cond", "loss_alone", "ifd_ppl", "ifd_loss", "n_response_tokens", "ifd_status",
    "rloss_cond", "rloss_alone", "rifd_ppl", "rifd_loss", "n_instruction_tokens", "rifd_status",
]  # fmt: skip
ROWS = [
    {"id": "first", "instruction": "Explain photosynthesis.", "output": "Plants use light."},
    {"instruction": "Explain photosynthesis.", "input": "Plants", "output": "Plants use light. [End]"},
    {"id": 7, "instruction": "Explain photosynthesis.", "output": ""},
]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-student")
    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def score(tmp_path, student_dir, rows, *extra) -> tuple[int, Path]:
    src = write_jsonl(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "scores.jsonl"
    argv = [
        "score",
        "--input",
        str(src),
        "--output",
        str(out),
        "--student",
        str(student_dir),
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]
    return main(argv), out


def test_score_writes_one_row_per_input_row(tmp_path, student_dir):
    rc, out = score(tmp_path, student_dir, ROWS, "--max-length", "1024", "--template", "chat")
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [list(r) for r in rows] == [FIELDS] * 3
    assert rows[0]["id"] == "first" and rows[2]["id"] == "7" and len(rows[1]["id"]) == 20  # content hash
    assert rows[0]["ifd_status"] == "ok" and rows[0]["rifd_status"] == "ok" and rows[0]["ifd_ppl"] > 0
    assert rows[2]["ifd_status"] == "empty_response" and rows[2]["ifd_ppl"] is None and rows[2]["loss_cond"] is None


def test_cache_makes_the_second_run_free(tmp_path, student_dir, monkeypatch):
    calls = []
    original = LossEngine.forward
    monkeypatch.setattr(
        LossEngine,
        "forward",
        lambda self, batch, prefix=None: calls.append(len(batch)) or original(self, batch, prefix),
    )
    db = tmp_path / "cache.duckdb"
    assert score(tmp_path, student_dir, ROWS, "--cache", str(db))[0] == 0
    first = len(calls)
    first_rows = (tmp_path / "scores.jsonl").read_text()
    assert first > 0
    assert score(tmp_path, student_dir, ROWS, "--cache", str(db))[0] == 0
    assert len(calls) == first
    assert (tmp_path / "scores.jsonl").read_text() == first_rows


@pytest.mark.parametrize(
    "rows, message",
    [
        ([ROWS[0], "{not json"], ":2: invalid JSON"),
        ([ROWS[0], {"instruction": "x"}], ":2: missing field 'output'"),
        ([{"output": "x"}], ":1: missing field 'instruction'"),
        (["[1, 2]"], ":1: expected a JSON object"),
        ([{"instruction": "x", "output": 3}], ":1: field 'output' must be a string"),
        ([{"instruction": "x", "output": "y", "input": ["z"]}], ":1: field 'input' must be a string"),
    ],
)
def test_bad_rows_exit_2_with_one_line_naming_file_and_line(tmp_path, student_dir, capsys, rows, message):
    rc, out = score(tmp_path, student_dir, rows)
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: ") and f"pairs.jsonl{message}" in err


def test_missing_input_file_and_bad_student(tmp_path, student_dir, capsys):
    rc = main(["score", "--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o.jsonl")])
    assert rc == 2 and "nope.jsonl: cannot read" in capsys.readouterr().err
    rc, _ = score(tmp_path, tmp_path / "no-such-model", ROWS[:1])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in err


def test_score_imports_no_dagster_mlflow_or_datasets(tmp_path, student_dir):
    src = write_jsonl(tmp_path / "pairs.jsonl", ROWS[:1])
    code = (
        "import sys; from reflection_assets.cli import main; "
        f"rc = main(['score', '--input', {str(src)!r}, '--output', {str(tmp_path / 'o.jsonl')!r}, "
        f"'--student', {str(student_dir)!r}, '--quiet']); "
        "print(rc, sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'mlflow', 'datasets'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.stdout.strip().splitlines()[-1] == "0 []", result.stderr
