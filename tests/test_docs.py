"""The docs: a site MkDocs builds strictly (no broken link, no page left out), tables generated from the
code where a page marks them, and a README short enough to read."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reflection_assets.commands.config_docs import MARKER, config_classes, generated_tables, render_generated
from reflection_assets.defs.deployment import TEACHER_SETTINGS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_MAX_LINES = 150


def nav_files(entries: list) -> set[str]:
    found: set[str] = set()
    for entry in entries:
        for value in entry.values() if isinstance(entry, dict) else [entry]:
            found |= nav_files(value) if isinstance(value, list) else {value}
    return found


def test_the_site_builds_strictly_with_the_generated_tables(tmp_path: Path) -> None:
    site = tmp_path / "site"
    built = subprocess.run(
        [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "-d", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    page = (site / "configuration" / "index.html").read_text()
    assert "generated:" not in page  # every marker was replaced
    for _, cls in config_classes():
        assert all(f"<code>{knob}</code>" in page for knob in cls.model_fields)
    assert all(f"<code>{s.variable}</code>" in page for s in TEACHER_SETTINGS)
    assert (site / "benchmarks" / "index.html").read_text().count("<h2") >= 5  # BENCHMARKS.md, included


def test_every_page_is_in_the_nav_and_every_generated_table_on_a_page() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert nav_files(config["nav"]) == {p.name for p in DOCS.glob("*.md")}
    marked = {m for p in DOCS.glob("*.md") for m in MARKER.findall(p.read_text())}
    assert marked == set(generated_tables())


def test_an_unknown_table_is_an_error_that_names_the_page() -> None:
    with pytest.raises(KeyError, match=r"graph\.md: no generated table 'nope'"):
        render_generated("text <!-- generated: nope --> text", "graph.md")


def test_the_readme_is_short_and_keeps_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    assert re.search(r"^make demo ", readme, re.M) and re.search(r"^make test ", readme, re.M)
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).exists(), link
