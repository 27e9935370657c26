"""The demo's closing note on the teacher: parse share and stage time per teacher, on the same rows.

Read from the reflection assets' materializations in the Dagster instance (their metadata carries the
run's counters), newest first. A teacher that ran on this partition earlier in the same instance (the
in-process one, before a server was configured, say) keeps its own row, so the two sit side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STAGE_ASSETS = (("instruction", "instruction_reflections"), ("response", "response_reflections"))


@dataclass(frozen=True)
class StageRun:
    stage: str
    backend: str
    model: str
    mode: str  # "guided" | "unguided"
    answered: int  # rows the teacher wrote something for (reflected + parse_failed)
    reflected: int
    calls_made: int
    calls_cached: int
    elapsed_s: float

    @property
    def parse_share(self) -> float | None:
        return self.reflected / self.answered if self.answered else None

    @property
    def rows_per_s(self) -> float | None:
        return self.calls_made / self.elapsed_s if self.calls_made and self.elapsed_s else None


def stage_run(stage: str, metadata: dict[str, Any]) -> StageRun | None:
    """A StageRun from one materialization's metadata (plain values); None when it lacks the counters."""
    if "backend" not in metadata or "elapsed_s" not in metadata:
        return None
    reflected = int(metadata.get("outcome_reflected", 0))
    return StageRun(
        stage=stage,
        backend=str(metadata["backend"]),
        model=str(metadata.get("model", "")),
        mode=str(metadata.get("mode", "")) or "?",
        answered=reflected + int(metadata.get("outcome_parse_failed", 0)),
        reflected=reflected,
        calls_made=int(metadata.get("calls_made", 0)),
        calls_cached=int(metadata.get("calls_cached", 0)),
        elapsed_s=float(metadata["elapsed_s"]),
    )


def latest_per_teacher(runs: list[StageRun]) -> list[StageRun]:
    """The newest run of each (stage, backend, model, mode); `runs` come newest first.

    A run answered wholly from the cache says nothing about speed: an older run of the same
    teacher that made calls is preferred to it.
    """
    chosen: dict[tuple, StageRun] = {}
    for run in runs:
        key = (run.stage, run.backend, run.model, run.mode)
        if key not in chosen or (chosen[key].calls_made == 0 and run.calls_made > 0):
            chosen[key] = run
    return list(chosen.values())


def format_note(runs: list[StageRun]) -> list[str]:
    if not runs:
        return []
    header = f"  {'stage':12s} {'teacher':34s} {'mode':9s} {'parsed':>12s} {'calls':>6s} {'cached':>6s} {'time':>8s}"
    lines = ["Teacher (parse share = rows whose reflection parsed / rows the teacher answered; newest first):",
             f"{header} {'rows/s':>7s}"]
    for run in runs:
        share = f"{run.reflected}/{run.answered} {run.parse_share:4.0%}" if run.parse_share is not None else "-"
        speed = f"{run.rows_per_s:.2f}" if run.rows_per_s is not None else "-"
        teacher = f"{run.backend} {run.model}"[:34]
        lines.append(f"  {run.stage:12s} {teacher:34s} {run.mode:9s} {share:>12s} {run.calls_made:>6d} "
                     f"{run.calls_cached:>6d} {run.elapsed_s:>7.1f}s {speed:>7s}")
    return lines


def teacher_note(instance: Any, partition: str, limit: int = 50) -> list[str]:
    """Lines for the demo's closing note (empty when no reflection ran on this partition)."""
    import dagster as dg

    runs: list[StageRun] = []
    for stage, asset in STAGE_ASSETS:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=limit
        ).records
        for record in records:
            materialization = record.asset_materialization
            if materialization is None:
                continue
            values = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
            run = stage_run(stage, values)
            if run is not None:
                runs.append(run)
    return format_note(latest_per_teacher(runs))
