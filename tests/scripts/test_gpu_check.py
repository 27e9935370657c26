"""The GPU check's CPU mode in CI: every step runs and passes, or is skipped with its reason (about 90 s here;
the time is printed, not asserted: each step's own cap in the script bounds it).

The real check runs once on a lent H200 (scripts/gpu_check.sh); this keeps its code exercised on every change,
so the one GPU run is not spent on a bug of the script itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.py"
STEPS = [
    "environment",
    "bnb_4bit",
    "scoring",
    "teacher_generation",
    "evaluation",
    "training_bf16",
    "training_qlora",
    "fsdp2",
]


def test_cpu_mode_runs_every_step(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "REFLECTION_DATA_DIR": str(tmp_path / "data")}
    started = time.monotonic()
    run = subprocess.run(
        # Caps tripled: the suite's other worker shares the two cores (the caps catch a hung step, not a slow one).
        [sys.executable, str(SCRIPT), "--cpu", "--out", str(out), "--workdir", str(tmp_path / "work"),
         "--cap-scale", "3"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.monotonic() - started  # about 90 s here; each step has its own cap inside the script
    assert out.is_file(), run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    steps = report["steps"]
    assert report["mode"] == "cpu" and report["finished"] is True
    assert [s["step"] for s in steps] == STEPS
    failures = {s["step"]: s.get("error") for s in steps if s["status"] not in ("passed", "skipped")}
    assert not failures, f"{failures}\n{run.stdout[-3000:]}"
    for step in steps:
        assert step["passed"] is (step["status"] == "passed")
        assert isinstance(step["seconds"], (int, float))
        if step["status"] == "skipped":
            assert step["skipped_reason"].strip(), step
        else:
            assert step.get("checks") or step["step"] == "environment", step  # a pass is made of named checks
    assert run.returncode == 0, run.stdout[-3000:]
    # Only what a CPU cannot do is skipped: everything else really ran here.
    skipped = {s["step"] for s in steps if s["status"] == "skipped"}
    assert skipped <= {"training_qlora", "fsdp2"}, skipped
    print(f"CPU mode: {seconds:.0f}s", [(s["step"], s["seconds"]) for s in steps])


def test_only_runs_the_named_steps_and_rejects_unknown_ones(tmp_path: Path) -> None:
    out = tmp_path / "one.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu", "--out", str(out), "--only", "environment"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert [s["step"] for s in json.loads(out.read_text())["steps"]] == ["environment"]
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu", "--out", str(out), "--only", "nonsense"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "unknown steps" in bad.stderr
