import mlflow
import pytest

from resources.tracking import MlflowTracking, default_tracking_uri, scrub_params

pytestmark = pytest.mark.fresh_mlflow_store  # these tests are about creating the store


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

def test_log_run_records_curves_folders_and_tags_and_find_run_reads_it_back(isolated_data_dir, tmp_path):
    tracking = MlflowTracking()
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    run = tracking.log_run(
        None, "lora_checkpoint", metrics={"summary_final_loss": 1.5}, params={"rank": 8, "token": "secret"},
        step_metrics=[(1, {"loss": 2.0}), (2, {"loss": 1.5}), (3, {})], artifact_folders={"adapter": adapter},
        tags={"checkpoint_key": "abc"},
    )
    found = tracking.find_run(run.info.run_id)
    assert found is not None and found.data.tags["checkpoint_key"] == "abc"
    assert found.data.params == {"rank": "8"}
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.5)]
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "adapter")] == [
        "adapter/adapter_config.json"
    ]
    assert tracking.find_run("0" * 32) is None


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


def test_the_experiment_is_a_model_training_one_so_mlflow_opens_on_its_runs(isolated_data_dir):
    """MLflow 3's UI opens an experiment without a kind on its GenAI overview ("Traces 0")."""
    from resources.tracking import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND

    tracking = MlflowTracking()
    assert tracking.runs_url() is None  # nothing logged: no store is created by looking
    assert not (isolated_data_dir / "mlflow.db").exists()
    tracking.log(None, "some_asset", metrics={"rows": 1})
    mlflow.set_tracking_uri(tracking.resolved_uri())
    experiment = mlflow.get_experiment_by_name(tracking.experiment_name)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    assert tracking.runs_url() == f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs"


def test_an_experiment_made_without_a_kind_gets_it_on_first_use(isolated_data_dir):
    from resources.tracking import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND

    tracking = MlflowTracking()
    mlflow.set_tracking_uri(tracking.resolved_uri())
    experiment_id = mlflow.create_experiment(tracking.experiment_name)  # as an earlier version made it
    assert EXPERIMENT_KIND_TAG not in mlflow.get_experiment(experiment_id).tags
    tracking.log(None, "some_asset", metrics={"rows": 1})
    assert mlflow.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
