"""Which tests share a pytest-xdist worker (tests/conftest.py marks them; `make test` runs `--dist loadgroup`)."""

from __future__ import annotations

# `make test` runs two pytest-xdist workers with `--dist loadgroup`: the tests of one group run one after
# another on one worker, everything else spreads over both. Grouped here by file, in one place:
XDIST_GROUPS = {
    # `dagster dev` (webserver, daemon, code server, a process per run and step) and a browser
    "dagster_dev": ("tests/deploy/test_automation_daemon.py", "tests/test_ui.py"),
    # process launchers: `dagster job execute` runs, torchrun ranks, killed workers, the GPU script's CPU mode
    "launchers": (
        "tests/deploy/test_killed_runs.py",
        "tests/deploy/test_parallel_partitions.py",
        "tests/reflection_assets/defs/assets/test_lora_checkpoint_launch.py",
        "tests/scripts/test_gpu_check.py",
    ),
    # Postgres, an object store and an MLflow server on loopback (the `shared_stores` fixture): started once
    "shared_stores": (
        "tests/deploy/test_shared_instance.py",
        "tests/resources/test_object_tables_io.py",
        "tests/reflection_assets/test_postgres_store.py",
        "tests/reflection_assets/training/test_shared_checkpoints.py",
        "tests/resources/test_tracking_server.py",
    ),
    # the bundled 135M model: loaded once per worker, so once per run when its tests share one
    "bundled_model": (
        "tests/reflection_assets/defs/assets/test_graph.py",
        "tests/reflection_assets/served/",
        "tests/reflection_assets/test_model_store.py",
        "tests/resources/test_student_vllm.py",
        "tests/resources/test_student_vllm_eval.py",
        "tests/reflection_assets/teacher/test_local_teacher.py",
        "tests/resources/test_teacher_serve.py",
    ),
}


def xdist_group_of(path: str) -> str | None:
    return next((group for group, prefixes in XDIST_GROUPS.items() if path.startswith(prefixes)), None)
