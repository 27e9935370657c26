"""`dagster dev` for tests: started in its own session on a free 127.0.0.1 port, ready once the code
location is LOADED (the webserver answers well before that), stopped with everything it started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def start_dagster_dev(env: dict, load_timeout_s: float = 300) -> tuple[subprocess.Popen, str]:
    """(the `dagster dev` process, the UI's URL), once the code location is loaded."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_loaded(url, server, load_timeout_s)
    except BaseException:
        stop_session(server)
        raise
    return server, url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


def wait_until_loaded(url: str, server: subprocess.Popen, seconds: float) -> None:
    """The code location is LOADED (the webserver answers well before that)."""
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "dagster dev exited early"
        try:
            entries = graphql(url, query)["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"code location not loaded within {seconds:.0f}s")


def stop_session(server: subprocess.Popen) -> None:
    # Ctrl-C, as a user stops it: dagster dev shuts its children down and exits in ~2 s (SIGTERM took 7-20 s).
    os.killpg(server.pid, signal.SIGINT)
    try:
        server.wait(5)  # the test's instance is thrown away: no need to wait for a slow shutdown
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(server.pid, signal.SIGKILL)  # whatever outlived dagster dev (a code server at times)
    except ProcessLookupError:
        pass
    server.wait(10)
