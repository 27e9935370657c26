"""The instance configs under deploy/ agree on the shared stores (the shared one runs for real in
test_shared_instance.py; the Kubernetes example needs dagster-k8s, so it is read here, not loaded)."""

import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SHARED = yaml.safe_load((REPO / "deploy" / "shared" / "dagster.yaml").read_text())
KUBERNETES = yaml.safe_load((REPO / "deploy" / "kubernetes" / "dagster.yaml").read_text())


@pytest.mark.parametrize("config", [SHARED, KUBERNETES], ids=["shared", "kubernetes"])
def test_postgres_is_reached_through_the_driver_dagster_postgres_installs(config):
    # A bare postgresql:// makes SQLAlchemy 2.1 import psycopg 3, which nothing installs.
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"


def test_the_kubernetes_example_keeps_step_logs_where_the_shared_config_does():
    assert KUBERNETES["compute_logs"] == SHARED["compute_logs"]


def test_one_run_per_partition_at_a_time_on_one_machine_and_on_several(tmp_path):
    import dagster as dg

    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    # How the run queue reads them (the counter its daemon keeps): with `a` running, a second `a` waits; `b` goes.
    from dagster._utils.tags import TagConcurrencyLimitsCounter

    def run(partition: str) -> dg.DagsterRun:
        return dg.DagsterRun(job_name="dataset_job", tags={"dagster/partition": partition})

    counter = TagConcurrencyLimitsCounter(limits, [run("a")])
    assert counter.is_blocked(run("a")) and not counter.is_blocked(run("b"))
    local = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert SHARED["concurrency"]["runs"]["tag_concurrency_limits"] == local["concurrency"]["runs"][
        "tag_concurrency_limits"
    ]
