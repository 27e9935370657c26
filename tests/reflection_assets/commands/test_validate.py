"""`reflection-tuning validate`: exit codes and messages, in process and as a real process."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from reflection_assets.commands import validate

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "ingest"


def run_validate(*argv):
    parser = argparse.ArgumentParser(prog="reflection-tuning validate")
    validate.add_arguments(parser)
    return validate.run(parser.parse_args([str(a) for a in argv]))


def run_process(*args, env=None):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **(env or {})}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )


def assert_one_line_error(stderr, *fragments):
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in stderr


def test_rejections_still_exit_0_and_report_is_written(tmp_path, capsys):
    report_path = tmp_path / "report.json"
    assert run_validate(FIXTURES / "bad_rows.jsonl", "--report", report_path) == 0
    out = capsys.readouterr().out
    assert "12 rows read, 1 accepted, 11 rejected" in out and "unknown_role" in out
    report = json.loads(report_path.read_text())
    assert report["rows_read"] == report["accepted"] + report["rejected"] == 12
    assert report["format"] == "messages" and sum(report["reasons"].values()) == 11


def test_column_map_option(capsys):
    assert run_validate(FIXTURES / "mapped.csv", "--column-map", "instruction=q,input=ctx,output=a") == 0
    assert "3 rows read, 2 accepted, 1 rejected" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("truncated.json", ["truncated.json: line 8, column 20: JSON array ends early (truncated?)"]),
        ("not_dataset.json", ["not_dataset.json", "not a dataset"]),
        ("nope.jsonl", ["nope.jsonl: no such file"]),
    ],
)
def test_unreadable_files_exit_2_with_one_line(name, fragments, capsys):
    assert run_validate(FIXTURES / name) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_line_error(captured.err, *fragments)


def test_bad_column_map_exits_2(capsys):
    assert run_validate(FIXTURES / "mapped.csv", "--column-map", "answer=a") == 2
    assert_one_line_error(capsys.readouterr().err, "--column-map", "unknown field")


def test_binary_file_as_a_process(tmp_path):
    path = tmp_path / "photo.jsonl"
    path.write_bytes(bytes(range(256)) * 8)
    proc = run_process("-m", "reflection_assets.commands.validate", str(path))
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "photo.jsonl", "binary data")


def test_offline_hub_name_as_a_process():
    proc = run_process(
        "-m", "reflection_assets.commands.validate", "nobody/no-such-dataset", "--format", "hf",
        env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "nobody/no-such-dataset: Hugging Face hub")


def test_command_imports_stay_light():
    heavy = ("torch", "transformers", "dagster", "datasets", "pandas")
    code = f"import sys, reflection_assets.commands.validate; print([m for m in {heavy!r} if m in sys.modules])"
    assert run_process("-c", code).stdout.strip() == "[]"


def test_through_the_project_cli(tmp_path):
    ok = run_process("-m", "reflection_assets.cli", "validate", str(FIXTURES / "bad_alpaca.jsonl"))
    assert ok.returncode == 0, ok.stderr
    assert "7 rows read, 1 accepted, 6 rejected" in ok.stdout
    bad = run_process("-m", "reflection_assets.cli", "validate", str(FIXTURES / "truncated.json"))
    assert bad.returncode == 2
    assert_one_line_error(bad.stderr, "truncated.json: line 8, column 20")
