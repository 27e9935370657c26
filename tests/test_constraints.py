"""constraints.txt (the exact tested versions `make install` installs) agrees with pyproject.toml and the Makefile.

A dependency added to pyproject.toml without a pin would install at whatever version is newest that day,
and a range raised past its pin would make `make install` fail to resolve.
"""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)$")


def pins(text: str) -> dict[str, Version]:
    """The `name==version` lines of a constraints file; any other non-comment line is an error."""
    found: dict[str, Version] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"constraints.txt: not an exact pin: {line!r}"
        name = canonicalize_name(match["name"])
        assert name not in found, f"constraints.txt pins {name} twice"
        found[name] = Version(match["version"])
    return found


def declared() -> list[Requirement]:
    """Every requirement pyproject.toml declares: dependencies and every extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return [Requirement(line) for line in lines]


def problems(requirements: list[Requirement], pinned: dict[str, Version]) -> list[str]:
    """What is wrong between pyproject's requirements and the pins (torch is pinned by the Makefile instead)."""
    found = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if name == "torch":
            continue
        if name not in pinned:
            found.append(f"{requirement} is not pinned in constraints.txt")
        elif not requirement.specifier.contains(pinned[name], prereleases=True):
            found.append(f"constraints.txt pins {name}=={pinned[name]}, outside pyproject's {requirement}")
    return found


def test_every_declared_dependency_is_pinned_within_its_range():
    assert problems(declared(), pins((ROOT / "constraints.txt").read_text())) == []


def test_a_missing_pin_and_a_pin_outside_the_range_are_both_reported():
    requirements = [Requirement("dagster>=1.13,<2"), Requirement("duckdb>=1.5"), Requirement("torch>=2.13")]
    found = problems(requirements, pins("# header\ndagster==2.0.1\n"))
    assert found == [
        "constraints.txt pins dagster==2.0.1, outside pyproject's dagster<2,>=1.13",
        "duckdb>=1.5 is not pinned in constraints.txt",
    ]


def test_torch_is_left_to_the_makefile_which_installs_the_tested_build_within_range():
    """A torch pin would make `make install TORCH=...` swap the chosen build for PyPI's; the Makefile owns it."""
    text = (ROOT / "constraints.txt").read_text()
    assert "torch" not in pins(text) and not any(name.startswith("nvidia-") for name in pins(text))
    tested = re.search(r"^# torch==(\S+) is tested", text, re.M)
    default = re.search(r"^TORCH \?= torch==(\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert tested and default, "constraints.txt's torch comment or the Makefile's TORCH default is missing"
    assert Version(default[1]) == Version(tested[1])
    (torch,) = [r for r in declared() if r.name == "torch"]
    assert torch.specifier.contains(default[1])
