"""Each asset's code version: a hash of the source its result is computed by.

Dagster records the code version with each materialization and the UI marks an asset stale
("code version changed") when the current one differs. Hashing the modules an asset's work lives
in (its asset module and the pure packages behind it) makes that mark follow the code itself, with
no version number to remember to bump; code an asset does not run leaves it alone.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import dagster as dg

SHARED = ("reflection_assets.defs.assets.common", "reflection_assets.schema")
SCORING = ("reflection_assets.defs.assets.scoring", "reflection_assets.scoring", "reflection_assets.selection")
TEACHER = (
    "reflection_assets.defs.assets.reflection", "reflection_assets.teacher", "reflection_assets.generation",
    "reflection_assets.selection.pairs", "resources.teacher", "resources.teacher_local", "resources.teacher_http",
)
SELECTION = (
    "reflection_assets.defs.assets.selection", "reflection_assets.selection", "reflection_assets.reflection70b",
    "reflection_assets.defs.assets.exports", "reflection_assets.ngrams",
)
EVALUATION = (
    "reflection_assets.defs.assets.evaluation", "reflection_assets.evaluation", "reflection_assets.generation",
    "reflection_assets.served", "reflection_assets.ngrams", "reflection_assets.selection.decontamination",
)

# Asset name -> the modules (packages: every .py below them) whose source its result depends on.
SOURCES: dict[str, tuple[str, ...]] = {
    "raw_instructions": ("reflection_assets.defs.assets.ingest", "reflection_assets.ingest"),
    "rejected_rows": ("reflection_assets.defs.assets.ingest", "reflection_assets.ingest"),
    "instruction_reflections": TEACHER,
    "response_reflections": TEACHER,
    "raw_ifd_scores": SCORING,
    "instruction_ifd_scores": SCORING,
    "response_scores": SCORING,
    "selected_dataset": SELECTION,
    "arm_datasets": SELECTION,
    "lora_checkpoint": ("reflection_assets.defs.assets.training", "reflection_assets.training"),
    "eval_scores": EVALUATION,
    "ablation_report": EVALUATION,
}


def _files(module: str) -> list[Path]:
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise ModuleNotFoundError(f"code version source {module!r} is not a module")
    if spec.submodule_search_locations:  # a package: every module below it
        return sorted(p for folder in spec.submodule_search_locations for p in Path(folder).rglob("*.py"))
    return [Path(str(spec.origin))]


@cache
def source_version(modules: tuple[str, ...]) -> str:
    """A short hash of the modules' source (file names and bytes, in a stable order)."""
    digest = hashlib.sha256()
    for path in sorted({p for module in (*modules, *SHARED) for p in _files(module)}):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def with_code_versions(assets: Iterable[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """`assets` with each asset's code version from SOURCES (a test checks every asset has one)."""

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        modules = SOURCES.get(spec.key.to_user_string())
        return spec if modules is None else spec.replace_attributes(code_version=source_version(modules))

    return dg.map_asset_specs(apply, list(assets))
