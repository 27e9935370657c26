import mlflow

from resources.tracking import MlflowTracking, default_tracking_uri, scrub_params


def test_default_store_is_sqlite_under_data(isolated_data_dir):
    assert default_tracking_uri() == f"sqlite:///{isolated_data_dir / 'mlflow.db'}"


def test_secrets_are_scrubbed_from_params():
    assert scrub_params({"api_key": "x", "OPENAI_API_KEY": "y", "Authorization": "z", "epochs": 2}) == {"epochs": 2}


def test_log_creates_a_tagged_run_with_metrics_params_and_artifacts(isolated_data_dir):
    tracking = MlflowTracking()
    meta = tracking.log(
        None, "some_asset", metrics={"rows": 3}, params={"lr": 0.1, "api_key": "secret"},
        artifacts={"note.txt": "hello", "plot.png": b"\x89PNG"},
    )
    run_id = meta["mlflow_run_id"].value
    mlflow.set_tracking_uri(tracking.resolved_uri())
    run = mlflow.get_run(run_id)
    assert run.data.metrics == {"rows": 3.0}
    assert run.data.params == {"lr": "0.1"}
    assert run.data.tags["dagster.asset_key"] == "some_asset"
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
    assert names == {"note.txt", "plot.png"}
    assert meta["mlflow_run"].value.endswith(run_id)


def test_log_records_a_dataset_as_the_runs_training_input(isolated_data_dir):
    import pandas as pd

    tracking = MlflowTracking()
    frame = pd.DataFrame({"row_id": ["a", "b"], "output": ["x", "y"]})
    run_id = tracking.log(None, "selected_dataset", metrics={"rows": 2}, datasets={"selected_dataset": frame})[
        "mlflow_run_id"
    ].value
    mlflow.set_tracking_uri(tracking.resolved_uri())
    inputs = mlflow.get_run(run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.tags[0].value) for i in inputs] == [("selected_dataset", "training")]
