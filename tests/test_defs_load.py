import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_definitions_load_and_resolve():
    from reflection_assets.defs.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw_instructions", "rejected_rows"} <= keys
    defs.resolve_job_def("dataset_job")
    assert defs.resolve_sensor_def("inbox_sensor")


def test_dagster_cli_validates_the_workspace(tmp_path):
    env = {"DAGSTER_HOME": str(tmp_path), "PATH": str(Path(sys.executable).parent)}
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    out = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_loading_the_code_location_leaves_the_model_libraries_unloaded(tmp_path):
    """The webserver, the daemon and every step process load the definitions; torch and transformers
    (about 3 s of imports here) are loaded by the steps that run a model, not by the load itself."""
    probe = ("import sys, reflection_assets.defs.definitions; "
             "print(sorted(m for m in ('torch', 'transformers', 'peft', 'trl', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env={"DAGSTER_HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "[]", out.stdout
