"""`make install`'s torch check: a CPU-only torch on a GPU machine stops the install with the fix."""

from __future__ import annotations

from tests.support.scripts import load_script


def load():
    return load_script("check_torch_build")


def test_a_cpu_build_on_a_gpu_machine_is_refused_with_the_fix():
    check = load()
    message = check.problem("2.13.0+cpu", None, gpus=True)
    assert "CPU-only build" in message and "TORCH_INDEX=https://download.pytorch.org/whl/cu" in message
    assert check.problem("2.13.0+cu128", "12.8", gpus=True) is None
    assert check.problem("2.13.0+cpu", None, gpus=False) is None  # a CPU machine: the CPU build is right


def test_no_driver_means_no_gpu(monkeypatch):
    check = load()
    monkeypatch.setattr(check.shutil, "which", lambda name: None)
    assert check.gpus_listed() is False
