"""The test groups `make test` keeps on one worker name files that exist (a renamed file would silently leave
its group and share the machine with the other heavy tests)."""

import pytest

from support.dagster_dev import REPO
from support.xdist_groups import XDIST_GROUPS, xdist_group_of


@pytest.mark.parametrize("prefix", [p for prefixes in XDIST_GROUPS.values() for p in prefixes])
def test_every_grouped_path_exists(prefix: str) -> None:
    assert (REPO / prefix).exists(), prefix


def test_a_file_belongs_to_at_most_its_one_group() -> None:
    assert xdist_group_of("tests/test_ui.py") == "dagster_dev"
    assert xdist_group_of("tests/reflection_assets/served/test_scoring.py") == "bundled_model"
    assert xdist_group_of("tests/reflection_assets/test_paths.py") is None
    prefixes = [p for group in XDIST_GROUPS.values() for p in group]
    assert len(prefixes) == len(set(prefixes))
