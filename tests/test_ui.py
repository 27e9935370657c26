"""The Dagster web UI driven in a real browser: headless Chromium (Playwright's Python API, Debian's
`chromium`, no browser download) against `dagster dev` on 127.0.0.1 with a temporary DAGSTER_HOME.

A new user's path: open `raw_instructions`, materialize it for a new dataset partition, wait for
the run to succeed, then look at the asset's metadata and its lineage graph. The rest of the graph,
through `ablation_report`, is then materialized on the same instance (in this process, with a
scripted teacher and a tiny student: `support.report_graph`), and the report's verdict table and
interval plot and a LoRA loss curve are opened where a user finds them. Screenshots go to
the test artifacts (`REFLECTION_TEST_ARTIFACTS`, default `test-artifacts/ui/`) and, with
`REFLECTION_UPDATE_SCREENSHOTS=1`, to `docs/screenshots/` (the docs' web UI page shows those).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.dagster_dev import graphql, start_dagster_dev, stop_session
from support.report_graph import materialize_through_the_report

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium")) if p and Path(p).exists()), None)
PARTITION = "ui_sample"
SAMPLE = REPO / "tests/fixtures/ingest/alpaca.jsonl"
SUBJECTS = ["synonym", "French", "2 + 2"]  # a word of each of SAMPLE's instructions, for the scripted teacher

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                       reason="needs Debian's chromium (apt-get install -y chromium; .ci/run installs it)"),
]


def wait_for_run(url: str, seconds: float) -> str:
    """The status of the one run, once it has finished."""
    query = "{ runsOrError { ... on Runs { results { runId status } } } }"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runs = graphql(url, query)["runsOrError"]["results"]
        if runs and runs[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return runs[0]["status"]
        time.sleep(1)
    raise TimeoutError(f"run not finished within {seconds:.0f}s")


@pytest.fixture
def dagster_dev(tmp_path):
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    # The repo's instance config, minus the automation daemon (this test is about the UI, and the
    # automation sensor would start the teacher on the new partition in the background) and minus
    # the community sign-up dialog, which opens whenever it likes on a new DAGSTER_HOME and once
    # covered the materialize dialog with a backdrop no click could get through (CI, stop 25).
    (home / "dagster.yaml").write_text(
        (REPO / "dagster.yaml").read_text()
        + "\nauto_materialize:\n  enabled: false\n  use_sensors: false\nnux:\n  enabled: false\n"
    )
    env = {**os.environ, "DAGSTER_HOME": str(home), "REFLECTION_DATA_DIR": str(data)}
    subprocess.run(  # the new partition's file, registered as the inbox sensor would
        [sys.executable, "-c", "import sys; from reflection_assets.paths import warehouse_path; "
         "from reflection_assets.ingest.registry import DatasetSource, register_source; "
         "register_source(warehouse_path(), sys.argv[1], DatasetSource(sys.argv[2]))",
         PARTITION, str(SAMPLE)],
        cwd=REPO, env=env, check=True, timeout=120,
    )
    server, url = start_dagster_dev(env)
    try:
        yield url, home
    finally:  # dagster dev, its webserver, daemon, code servers and run workers share the session
        stop_session(server)


@pytest.fixture
def screenshots(tmp_path):
    folders = [Path(os.environ.get("REFLECTION_TEST_ARTIFACTS", REPO / "test-artifacts")) / "ui"]
    if os.environ.get("REFLECTION_UPDATE_SCREENSHOTS") == "1":
        folders.append(REPO / "docs" / "screenshots")
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)

    def save(page, name: str, element=None) -> None:
        (element or page).screenshot(path=str(tmp_path / name))
        for folder in folders:
            shutil.copyfile(tmp_path / name, folder / name)
        assert (tmp_path / name).stat().st_size > 20_000  # a rendered page, not a blank one

    return save


def open_materialize_dialog(page, expect) -> None:
    """Click "Materialize…" until its dialog lists the multi-asset's other output (`rejected_rows`):
    a click before the page's data has arrived can open nothing."""
    page.wait_for_load_state("networkidle")
    wanted = page.get_by_role("dialog").filter(has_text="rejected_rows")
    for attempt in range(3):
        page.get_by_role("button", name=re.compile(r"Materialize…$")).click()
        try:
            expect(wanted).to_be_visible()
            return
        except AssertionError:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")


def show_markdown(page, expect, key: str):
    """The dialog that "[Show Markdown]" opens for metadata entry `key` (long markdown is not inlined)."""
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=key, exact=True))
    row.get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    return dialog


def expect_image_loaded(expect, dialog, alt: str) -> None:
    image = dialog.get_by_role("img", name=alt)
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth > 100"), f"{alt}: not decoded"


def test_materialize_a_new_partition_from_the_asset_page(dagster_dev, screenshots, tiny_base):
    assert CHROMIUM, "chromium is required in CI"
    import dagster as dg
    from playwright.sync_api import expect, sync_playwright

    dagster_dev, home = dagster_dev

    expect.set_options(timeout=20_000)  # every check polls; a busy 2-core CI machine renders slowly
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)

        page.goto(f"{dagster_dev}/assets/raw_instructions")
        open_materialize_dialog(page, expect)
        page.get_by_role("button", name="Confirm").click()
        page.get_by_role("button", name="Add a partition").click()
        page.get_by_placeholder("name", exact=True).fill(PARTITION)
        page.get_by_role("button", name="Save").click()
        page.get_by_role("button", name="Launch 1 run").click()

        assert wait_for_run(dagster_dev, 300) == "SUCCESS"

        page.goto(f"{dagster_dev}/assets/raw_instructions?partition={PARTITION}")
        # The status card fills in after its own query; under a loaded CI machine that took longer
        # than expect's 5 s default once (stop 26), so the page gets a minute and one reload.
        for attempt in range(2):
            status = page.get_by_text("Latest materialization").locator("..")
            try:
                expect(status.get_by_text(PARTITION)).to_be_visible(timeout=60_000)
                break
            except AssertionError:
                if attempt == 1:
                    raise
                page.reload()
        for key in ("rows_read", "accepted", "rejected", "preview"):
            expect(page.get_by_role("cell", name=key, exact=True)).to_be_visible()
        expect(page.get_by_role("cell", name="alpaca", exact=True)).to_be_visible()  # the detected format
        # The source as the repository names it: no machine's checkout path in the UI (or the README).
        expect(page.get_by_text(str(SAMPLE.relative_to(REPO)), exact=True)).to_be_visible()
        expect(page.get_by_text(str(REPO))).to_have_count(0)
        screenshots(page, "asset_materialized.png")

        page.get_by_role("button", name=re.compile("Plots$")).click()  # the counts over materializations
        expect(page.get_by_text("rows_read").first).to_be_visible()
        screenshots(page, "asset_metadata_plots.png")

        page.get_by_role("tab", name="Lineage").click()
        for asset in ("raw_instructions", "raw_ifd_scores", "arm_datasets"):
            expect(page.get_by_text(asset, exact=True).first).to_be_visible()
        page.wait_for_timeout(1500)  # let the graph finish laying out before the picture
        screenshots(page, "asset_lineage.png")

        with dg.DagsterInstance.from_config(str(home)) as instance:
            materialize_through_the_report(instance, PARTITION, SUBJECTS, tiny_base)

        page.set_viewport_size({"width": 1400, "height": 1000})
        page.goto(f"{dagster_dev}/assets/ablation_report")
        expect(page.get_by_role("cell", name="primary_verdict", exact=True)).to_be_visible()
        table = show_markdown(page, expect, "table")
        for header in ("model", "vs", "suite/metric", "verdict"):
            expect(table.get_by_role("columnheader", name=header, exact=True).first).to_be_visible()
        expect(table.get_by_role("cell", name="primary", exact=True)).to_be_visible()  # the primary endpoint's row
        table.get_by_role("columnheader", name="verdict").first.scroll_into_view_if_needed()  # it opens at Close
        page.wait_for_timeout(500)
        screenshots(page, "ablation_report_table.png")
        page.keyboard.press("Escape")
        intervals = show_markdown(page, expect, "intervals")
        expect_image_loaded(expect, intervals, "selective - reference, 95% interval over runs and items")
        screenshots(page, "ablation_report_intervals.png", intervals)
        page.keyboard.press("Escape")

        page.get_by_role("tab", name="Lineage").click()  # the graph's end: training, evaluation, the report
        for asset in ("lora_checkpoint", "eval_scores", "ablation_report"):
            expect(page.get_by_text(asset, exact=True).first).to_be_visible()
        page.wait_for_timeout(1500)
        screenshots(page, "report_lineage.png")

        page.goto(f"{dagster_dev}/assets/lora_checkpoint")
        loss = show_markdown(page, expect, "loss_curve")
        expect_image_loaded(expect, loss, "training loss")
        screenshots(page, "lora_loss_curve.png", loss)  # the dialog alone: the page lists the adapter's path
        browser.close()
