"""MLflow tracking: every materialization that produces metrics logs one run.

Runs are tagged with the Dagster run id, asset key and partition, and the asset's metadata links
back to the run. The default store is SQLite under `data/` (MLFLOW_TRACKING_URI overrides: a tracking
server's URL puts runs and artifacts where the server keeps them).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from reflection_assets.paths import data_dir

SECRET_PATTERN = re.compile(r"(api[_-]?key|token|secret|password|authorization)", re.IGNORECASE)
# MLflow 3's UI opens an experiment without this tag on its GenAI overview ("Traces 0"); this kind
# ("Machine learning" in its selector) opens the runs, where this project's work is.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{data_dir() / 'mlflow.db'}"


# A tracking server keeps artifacts where it was told (`mlflow server --artifacts-destination s3://...`): a
# client that named a local folder here would leave them on the machine that logged them.
REMOTE_SCHEMES = ("http", "https", "databricks")


def local_artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside the data folder for a store on this machine (a SQLite
    file, a folder, a database reached directly), None for a tracking server, whose own artifact root applies."""
    if uri.split(":", 1)[0].lower() in REMOTE_SCHEMES:
        return None
    return Path(data_dir() / "mlartifacts").resolve().as_uri()


def scrub_params(params: dict[str, Any]) -> dict[str, Any]:
    """Drop anything that looks like a credential before it reaches MLflow."""
    return {k: v for k, v in params.items() if not SECRET_PATTERN.search(k)}


@contextlib.contextmanager
def sqlite_store_lock(uri: str) -> Iterator[None]:
    """One process at a time past this point for a SQLite store (other stores: no lock).

    Steps of parallel runs start at once; on a fresh SQLite store each would run MLflow's schema
    migrations, and all but the first fail in alembic. An exclusive lock on a file beside the
    database makes the first create it and the others find it ready.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    database = Path(uri[len("sqlite:///"):])
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class MlflowTracking(dg.ConfigurableResource):
    """Logs runs to MLflow, tagged with their Dagster origin."""

    tracking_uri: str = ""
    experiment_name: str = "reflection-tuning"
    ui_url: str = "http://127.0.0.1:5000"

    def resolved_uri(self) -> str:
        uri = self.tracking_uri
        if isinstance(uri, dg.EnvVar):  # unresolved outside a run (e.g. the demo's summary)
            uri = uri.get_value() or ""
        return uri or default_tracking_uri()

    def _experiment_id(self, mlflow: Any) -> str:
        uri = self.resolved_uri()
        mlflow.set_tracking_uri(uri)
        with sqlite_store_lock(uri):  # the first access creates (migrates) the store
            experiment = mlflow.get_experiment_by_name(self.experiment_name)
            if experiment is not None:
                if EXPERIMENT_KIND_TAG not in experiment.tags:  # made before the kind was set, or by hand
                    mlflow.MlflowClient().set_experiment_tag(
                        experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND
                    )
                return experiment.experiment_id
            try:
                return mlflow.create_experiment(
                    self.experiment_name,
                    artifact_location=local_artifact_location(uri),
                    tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND},
                )
            except Exception:  # noqa: BLE001 - another process created it first
                return mlflow.get_experiment_by_name(self.experiment_name).experiment_id

    @contextlib.contextmanager
    def start_run(
        self, context: dg.AssetExecutionContext | dg.OpExecutionContext | None, name: str, **extra_tags: str
    ) -> Iterator[Any]:
        """An MLflow run tagged with the Dagster run id, asset key and partition."""
        import mlflow

        experiment_id = self._experiment_id(mlflow)
        tags = {"dagster.asset_key": name, **extra_tags}
        if context is not None:
            tags["dagster.run_id"] = context.run.run_id
            if context.has_partition_key:
                tags["dagster.partition_key"] = context.partition_key
        run_name = f"{name}[{tags['dagster.partition_key']}]" if "dagster.partition_key" in tags else name
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
            yield run

    def runs_url(self) -> str | None:
        """The experiment's runs view in the MLflow UI; None before anything was logged to the store."""
        import mlflow

        uri = self.resolved_uri()
        if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
            return None  # looking would create an empty store
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.get_experiment_by_name(self.experiment_name)
        return None if experiment is None else f"{self.ui_url}/#/experiments/{experiment.experiment_id}/runs"

    def run_url(self, run: Any) -> str:
        return f"{self.ui_url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"

    def link_metadata(self, run: Any) -> dict[str, dg.MetadataValue]:
        return {
            "mlflow_run_id": dg.MetadataValue.text(run.info.run_id),
            "mlflow_run": dg.MetadataValue.url(self.run_url(run)),
        }

    def find_run(self, run_id: str) -> Any | None:
        """The run with this id, or None when the store no longer has it (a deleted or moved store)."""
        import mlflow

        mlflow.set_tracking_uri(self.resolved_uri())
        try:
            return mlflow.get_run(run_id)
        except Exception:  # noqa: BLE001 - MlflowException for an unknown id, OSError for a vanished file store
            return None

    def log_run(
        self,
        context: Any,
        name: str,
        metrics: dict[str, float] | None = None,
        params: dict[str, Any] | None = None,
        artifacts: dict[str, bytes | str | Path] | None = None,
        datasets: dict[str, Any] | None = None,
        step_metrics: list[tuple[int, dict[str, float]]] | None = None,
        artifact_folders: dict[str, str | Path] | None = None,
        tags: dict[str, str] | None = None,
    ) -> Any:
        """Log one run and return it.

        `params` are scrubbed of credentials and cut to 500 characters (MLflow's limit); `datasets`:
        name -> pandas DataFrame, logged as the run's training input; `step_metrics`: (step, values)
        curves; `artifact_folders`: artifact path -> local folder (e.g. an adapter).
        """
        import mlflow

        with self.start_run(context, name, **(tags or {})) as run:
            for dataset_name, frame in (datasets or {}).items():
                mlflow.log_input(mlflow.data.from_pandas(frame, name=dataset_name), context="training")
            if params:
                mlflow.log_params({k: str(v)[:500] for k, v in scrub_params(params).items()})
            if metrics:
                mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
            for step, values in step_metrics or []:
                if values:
                    mlflow.log_metrics({k: float(v) for k, v in values.items()}, step=int(step))
            for file_name, content in (artifacts or {}).items():
                if isinstance(content, Path):
                    mlflow.log_artifact(str(content))
                elif isinstance(content, bytes):
                    _log_bytes(mlflow, file_name, content)
                else:
                    mlflow.log_text(content, file_name)
            for artifact_path, folder in (artifact_folders or {}).items():
                mlflow.log_artifacts(str(folder), artifact_path=artifact_path)
        return run

    def log(self, context: Any, name: str, **what: Any) -> dict[str, dg.MetadataValue]:
        """Log one run (`what`: the keywords of `log_run`); return metadata linking to it."""
        return self.link_metadata(self.log_run(context, name, **what))


def _log_bytes(mlflow: Any, file_name: str, content: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / file_name
        path.write_bytes(content)
        mlflow.log_artifact(str(path))
