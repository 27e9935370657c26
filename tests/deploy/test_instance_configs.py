"""The instance configs under deploy/ agree on the shared stores (the shared one runs for real in
test_shared_instance.py; the Kubernetes example needs dagster-k8s, so it is read here, not loaded)."""

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
