"""MLflow as a server: a tracking server with its runs in Postgres and its artifacts in an S3-compatible bucket
(tests/support/shared_stores.py). The client names no artifact folder of its own for a server, so a run's
plots and files land in the bucket, where every machine reads them, not on the machine that logged them."""

import mlflow
import pytest

from resources.tracking import MlflowTracking, local_artifact_location

# slow: three servers; fresh_mlflow_store: the data folder starts without a local MLflow store, as a node would
pytestmark = [pytest.mark.slow, pytest.mark.fresh_mlflow_store]


def test_a_server_keeps_the_artifacts_a_local_store_keeps_beside_the_data(isolated_data_dir):
    assert local_artifact_location("http://mlflow:5000") is None
    assert local_artifact_location("HTTPS://mlflow.example.com") is None
    for uri in (f"sqlite:///{isolated_data_dir / 'mlflow.db'}", "postgresql+psycopg2://db/mlflow", "/srv/mlruns"):
        assert local_artifact_location(uri) == (isolated_data_dir / "mlartifacts").resolve().as_uri()


def test_runs_logged_to_a_server_put_their_artifacts_in_the_bucket(isolated_data_dir, shared_stores, monkeypatch):
    for name, value in shared_stores.node_env().items():
        monkeypatch.setenv(name, value)
    tracking = MlflowTracking(tracking_uri=shared_stores.mlflow_url, experiment_name="server-artifacts")
    artifacts = {"note.txt": "hello", "plot.png": b"\x89PNG"}
    meta = tracking.log(None, "some_asset", metrics={"rows": 3}, artifacts=artifacts)
    run_id = meta["mlflow_run_id"].value

    client = mlflow.MlflowClient(shared_stores.mlflow_url)
    assert client.get_run(run_id).data.metrics == {"rows": 3.0}
    assert {a.path for a in client.list_artifacts(run_id)} == {"note.txt", "plot.png"}
    stored = shared_stores.object_keys("mlflow/")
    assert {key.rsplit("/", 1)[-1] for key in stored if run_id in key} == {"note.txt", "plot.png"}
    assert not (isolated_data_dir / "mlartifacts").exists() and not (isolated_data_dir / "mlflow.db").exists()
