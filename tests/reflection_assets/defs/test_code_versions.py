"""Code versions follow the source an asset runs: every asset has one, and it moves with its code only."""

import pytest

from reflection_assets.defs.code_versions import SOURCES, source_version
from reflection_assets.defs.definitions import defs


def test_every_asset_has_a_code_version_and_every_named_asset_exists():
    graph = defs.resolve_asset_graph()
    names = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert set(SOURCES) == names
    assert all(graph.get(key).code_version for key in graph.get_all_asset_keys())


def test_the_version_changes_with_the_source_it_hashes_and_not_with_other_code(tmp_path, monkeypatch):
    package = tmp_path / "versioned_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "work.py").write_text("def work():\n    return 1\n")
    (tmp_path / "elsewhere.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = source_version(("versioned_pkg",))
    assert source_version(("versioned_pkg",)) == before  # stable

    (tmp_path / "elsewhere.py").write_text("X = 2\n")
    source_version.cache_clear()
    assert source_version(("versioned_pkg",)) == before  # code the asset does not run

    (package / "work.py").write_text("def work():\n    return 2\n")
    source_version.cache_clear()
    assert source_version(("versioned_pkg",)) != before


def test_a_source_that_is_not_a_module_fails_naming_it():
    source_version.cache_clear()
    with pytest.raises(ModuleNotFoundError, match="no_such_module_here"):
        source_version(("no_such_module_here",))
