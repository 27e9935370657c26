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
def test_parallel_processes_create_one_fresh_store_without_failing(tmp_path):
    """Parallel runs' first steps start together; each must find or create the store, none fail."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    script = ("import sys; from resources.tracking import MlflowTracking; import mlflow; "
              "print(MlflowTracking(tracking_uri=sys.argv[1])._experiment_id(mlflow))")
    procs = [subprocess.Popen([sys.executable, "-c", script, uri], cwd=repo, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-1500:] for _, err in results]
    assert len({out.strip().splitlines()[-1] for out, _ in results}) == 1  # one experiment, shared
