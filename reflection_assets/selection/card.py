"""The dataset card written beside each export: a Hugging Face datasets card (YAML header, markdown body).

The header carries what the Hub indexes (license when the source states one, task category, size, the
Parquet files as `alpaca` and `chat` configs) plus a `reflection_tuning` block with the counts, so a
program can read them back; the body says where the rows came from and what chose them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reflection_assets.hashing import file_sha256

CARD_NAME = "README.md"
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"))


@dataclass(frozen=True)
class SourceFile:
    """One dataset partition's source: its path, content hash and license (None when it states none)."""

    dataset: str
    source: str
    sha256: str  # "" when the source is not a local file or folder (a hub dataset name)
    license: str | None
    rows: int  # rows of this export from it


@dataclass(frozen=True)
class CardFacts:
    """Everything the card states; the counts come from the frames the asset stores."""

    title: str
    rows: int
    sources: list[SourceFile]
    teacher: dict[str, Any]
    student: str
    prompt_version: str
    selection_rule: str
    thresholds: dict[str, Any]
    decision_counts: dict[str, int]
    decontamination: dict[str, Any]  # n, benchmarks, rows_decontaminated, per_benchmark, matches
    ablation_verdict: str | None
    dagster_run: str
    mlflow_run: str | None
    data_files: dict[str, str] = field(default_factory=dict)  # config name -> Parquet file (relative)


def source_sha256(source: str) -> str:
    """SHA-256 of a source file, or of a folder's files (relative name and content, in name order); "" otherwise."""
    path = Path(source)
    if path.is_file():
        return file_sha256(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for member in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{member.relative_to(path).as_posix()}\0{file_sha256(member)}\n".encode())
        return digest.hexdigest()
    return ""


def source_license(source: str) -> str | None:
    """The license a source states about itself: a folder's dataset card or `dataset_info.json` (save_to_disk)."""
    path = Path(source)
    if not path.is_dir():
        return None
    card = path / CARD_NAME
    if card.is_file():
        from huggingface_hub import DatasetCard

        stated = DatasetCard(card.read_text(encoding="utf-8")).data.license
        if stated:
            return stated if isinstance(stated, str) else ", ".join(stated)
    for info in (path / "dataset_info.json", *path.glob("*/dataset_info.json")):
        if info.is_file():
            stated = json.loads(info.read_text(encoding="utf-8")).get("license")
            if stated:
                return str(stated)
    return None


def size_category(rows: int) -> str:
    return next((name for bound, name in SIZE_CATEGORIES if rows < bound), "n>10M")


def card_data(facts: CardFacts) -> dict[str, Any]:
    """The YAML header as a dict (DatasetCardData's fields plus the counts block)."""
    licenses = sorted({s.license for s in facts.sources if s.license})
    header: dict[str, Any] = {
        "task_categories": ["text-generation"],
        "size_categories": [size_category(facts.rows)],
        "pretty_name": facts.title,
        "tags": ["instruction-tuning", "selective-reflection-tuning"],
        "configs": [
            {"config_name": name, "data_files": [{"split": "train", "path": path}], **({"default": True} if i == 0
                                                                                       else {})}
            for i, (name, path) in enumerate(facts.data_files.items())
        ],
        "reflection_tuning": {
            "rows": facts.rows,
            "rows_per_source": {s.dataset: s.rows for s in facts.sources},
            "decision_counts": dict(facts.decision_counts),
            "rows_decontaminated": int(facts.decontamination.get("rows_decontaminated", 0)),
            "decontamination_per_benchmark": dict(facts.decontamination.get("per_benchmark", {})),
        },
    }
    if licenses:
        header["license"] = licenses[0] if len(licenses) == 1 else licenses
    return header


def _table(header: tuple[str, ...], rows: list[tuple]) -> str:
    escape = [tuple(str(cell).replace("|", "\\|").replace("\n", " ") for cell in row) for row in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in escape)])


def card_body(facts: CardFacts) -> str:
    decon = facts.decontamination
    licenses = sorted({s.license for s in facts.sources if s.license})
    parts = [
        f"# {facts.title}",
        f"{facts.rows} instruction/response pairs chosen by Selective Reflection-Tuning. The files: "
        + ", ".join(f"`{path}` ({name})" for name, path in facts.data_files.items())
        + "; every row keeps its `row_id`, the content hash of the raw pair it came from.",
        "## Sources",
        _table(("dataset", "source", "sha256", "license", "rows here"),
               [(s.dataset, s.source, s.sha256 or "(not a local file)", s.license or "not stated", s.rows)
                for s in facts.sources]),
        "License: " + (", ".join(licenses) if licenses else "no source states one; check the sources' terms")
        + ".",
        "## Models and prompts",
        _table(("role", "identity"), [("teacher", json.dumps(facts.teacher, sort_keys=True)),
                                       ("student", facts.student), ("prompt version", facts.prompt_version)]),
        "## Selection",
        facts.selection_rule,
        _table(("setting", "value"), [(k, v) for k, v in facts.thresholds.items()]),
        "Decision counts:",
        _table(("decision", "rows"), [(k, v) for k, v in facts.decision_counts.items()]),
        "## Decontamination",
        f"Every row (instruction, input and output together) was checked for shared word {decon['n']}-grams "
        f"against {sum(decon['benchmarks'].values())} benchmark items; {decon['rows_decontaminated']} overlapping "
        "rows were dropped from these files.",
        _table(("benchmark", "items checked", "rows dropped"),
               [(name, items, decon["per_benchmark"].get(name, 0)) for name, items in decon["benchmarks"].items()]),
    ]
    if decon["matches"]:
        parts += ["Dropped rows:", _table(("row_id", "benchmark", "item", "shared n-grams"),
                                          [(m["row_id"], m["benchmark"], m["item"], m["shared_ngrams"])
                                           for m in decon["matches"]])]
    parts += [
        "## Ablation",
        facts.ablation_verdict or "No ablation report existed when this export was written.",
        "## Provenance",
        _table(("what", "where"), [("Dagster run", facts.dagster_run),
                                   ("MLflow run", facts.mlflow_run or "(not logged)")]),
    ]
    return "\n\n".join(parts) + "\n"


def render_card(facts: CardFacts) -> str:
    """The card's text, through huggingface_hub's DatasetCard (its YAML header is the Hub's format)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(**card_data(facts))
    return str(DatasetCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ body }}",
                                         body=card_body(facts)))


def write_card(out_dir: str | Path, facts: CardFacts) -> Path:
    path = Path(out_dir) / CARD_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_card(facts), encoding="utf-8")
    return path


def read_card_counts(path: str | Path) -> dict[str, Any]:
    """The `reflection_tuning` counts block of a written card (for a reader, and the tests)."""
    from huggingface_hub import DatasetCard

    return DatasetCard(Path(path).read_text(encoding="utf-8")).data.to_dict()["reflection_tuning"]
