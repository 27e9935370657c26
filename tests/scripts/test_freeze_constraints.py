"""`make constraints`: pins what the project needs from the venv, leaving torch and its CUDA packages to TORCH."""

from __future__ import annotations

from packaging.requirements import Requirement

from tests.support.scripts import load_script


def load():
    return load_script("freeze_constraints")


def test_markers_follow_the_extras_asked_for_and_this_interpreter():
    freeze = load()
    serving = Requirement('fastapi; extra == "serving"')
    assert freeze.wanted(serving, frozenset({"serving"})) and not freeze.wanted(serving, frozenset())
    assert not freeze.wanted(Requirement('tomli; python_version < "3.0"'), frozenset())
    assert freeze.wanted(Requirement("numpy"), frozenset())


def test_pins_are_public_versions_without_torch_or_its_cuda_packages():
    freeze = load()
    versions = {"torch": "2.13.0+cpu", "nvidia-cublas-cu12": "12.8.4.1", "triton": "3.5.0", "peft": "0.21.2"}
    assert freeze.constraint_lines(versions) == ["peft==0.21.2"]
    assert "# torch==2.13.0 is tested" in freeze.render(versions)


def test_the_venv_walk_reaches_transitive_needs_and_extras():
    freeze = load()
    versions = freeze.needed_versions([Requirement("transformers[serving]")])
    assert {"transformers", "huggingface-hub", "tokenizers", "fastapi", "uvicorn"} <= versions.keys()
