"""The Dagster web UI serves the code location, checked in a real (headless) browser."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ASSETS = ["raw_instructions", "rejected_rows", "raw_ifd_scores", "instruction_reflections", "instruction_ifd_scores",
          "response_reflections", "response_scores", "selected_dataset", "arm_datasets"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a closed network: no background connections, no first-run work, a fresh profile.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,900", "--virtual-time-budget=30000"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                       reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {seconds:.0f}s")


@pytest.fixture
def webserver(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "REFLECTION_DATA_DIR": str(tmp_path / "data")}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/server_info", 240)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)


def test_asset_catalog_lists_every_asset_in_a_browser(webserver, tmp_path):
    assert CHROMIUM, "chromium is required in CI"
    browse = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*browse, "--dump-dom", f"{webserver}/assets"], capture_output=True, text=True, timeout=180).stdout
    missing = [name for name in ASSETS if name not in dom]
    assert not missing, f"asset catalog page lacks {missing}"
    shot = tmp_path / "assets.png"
    subprocess.run([*browse, f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={shot}", f"{webserver}/assets"],
                   capture_output=True, timeout=180)
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
