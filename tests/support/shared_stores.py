"""Real shared stores on loopback for the multi-machine tests: Postgres (Debian's `postgresql` package), an
S3-compatible object store (moto's server mode, from PyPI) and an MLflow tracking server over both.

One set per test session (tests/conftest.py's `shared_stores` fixture; the tests that use it share an xdist
group, so one worker starts it). Postgres refuses to run as root: as root its commands run as the `postgres`
user. Where Postgres is not installed the tests skip, except under CI, which installs it (.ci/run).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from support.dagster_dev import free_port

BUCKET = "reflection"
REGION = "us-east-1"
# moto accepts any key; real stores read theirs from the same standard variables.
AWS_KEYS = {"AWS_ACCESS_KEY_ID": "loopback", "AWS_SECRET_ACCESS_KEY": "loopback-secret", "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION}


def postgres_bin() -> Path | None:
    """The newest installed Postgres server's bin folder (Debian keeps it off PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def as_postgres_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def wait_for_url(url: str, process: subprocess.Popen, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer {url} within {seconds:.0f}s")


@dataclass
class SharedStores:
    """Where the running servers are, and the environment a node (a run process, a server) needs to reach them."""

    postgres_port: int
    s3_url: str
    mlflow_url: str
    folder: Path

    def postgres_url(self, database: str) -> str:
        # psycopg2 named in the scheme: SQLAlchemy 2.1 takes a bare postgresql:// to mean psycopg 3.
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.postgres_port}/{database}"

    def store_url(self, database: str = "reflection") -> str:
        """The caches' and registries' database (REFLECTION_STORE_URL)."""
        return f"postgresql://postgres@127.0.0.1:{self.postgres_port}/{database}"

    def fresh_store(self) -> str:
        """A new, empty database for the caches and registries (a test that counts them starts from none)."""
        name = f"store_{uuid.uuid4().hex[:8]}"
        self.create_database(name)
        return self.store_url(name)

    def node_env(self) -> dict[str, str]:
        """What deploy/shared/dagster.yaml and the MLflow client read, as a deployment would set it."""
        return {**AWS_KEYS, "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(self.postgres_port),
                "DAGSTER_PG_USER": "postgres", "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": "dagster",
                "REFLECTION_S3_BUCKET": BUCKET, "REFLECTION_S3_ENDPOINT_URL": self.s3_url,
                "REFLECTION_STORE_URL": self.store_url(), "REFLECTION_FILES_URI": f"s3://{BUCKET}/files",
                "MLFLOW_S3_ENDPOINT_URL": self.s3_url, "MLFLOW_TRACKING_URI": self.mlflow_url}

    def s3(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_url, region_name=REGION,
                            aws_access_key_id=AWS_KEYS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=AWS_KEYS["AWS_SECRET_ACCESS_KEY"])

    def object_keys(self, prefix: str) -> list[str]:
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def create_database(self, name: str) -> None:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.postgres_port, user="postgres", dbname="postgres")
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        try:
            with connection.cursor() as cursor:  # not `with connection`: that opens a transaction
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()


class SharedStoreServers:
    """Starts Postgres, the object store and the MLflow server; `stop()` ends them and removes their files."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []
        self.pg_data: Path | None = None
        self.pg_ctl: Path | None = None

    def start(self, bin_dir: Path) -> SharedStores:
        folder = Path(tempfile.mkdtemp(prefix="shared-stores-"))
        os.chmod(folder, 0o755)  # the postgres user reaches its folders under it
        port = self._start_postgres(bin_dir, folder)
        s3_url = self._start_object_store()
        stores = SharedStores(port, s3_url, "", folder)
        stores.s3().create_bucket(Bucket=BUCKET)
        stores.create_database("dagster")
        stores.create_database("mlflow")
        stores.create_database("reflection")
        stores.mlflow_url = self._start_mlflow(stores)
        return stores

    def _start_postgres(self, bin_dir: Path, folder: Path) -> int:
        self.pg_data, sockets = folder / "pg", folder / "pg-socket"
        for path in (self.pg_data, sockets):
            path.mkdir()
            if os.geteuid() == 0:
                shutil.chown(path, "postgres", "postgres")
        self.pg_ctl, port = bin_dir / "pg_ctl", free_port()
        subprocess.run(as_postgres_user([str(bin_dir / "initdb"), "-D", str(self.pg_data), "-U", "postgres",
                                         "--auth=trust", "-E", "UTF8"]),
                       check=True, capture_output=True, timeout=120)
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {sockets} -c fsync=off"
        subprocess.run(as_postgres_user([str(self.pg_ctl), "-D", str(self.pg_data), "-o", options, "-w",
                                         "-l", str(self.pg_data / "server.log"), "start"]),
                       check=True, capture_output=True, timeout=120)
        return port

    def _start_object_store(self) -> str:
        port = free_port()
        server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p",
                                   str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        self.processes.append(server)
        url = f"http://127.0.0.1:{port}"
        wait_for_url(f"{url}/moto-api/", server, 60, "the object store (moto_server)")
        return url

    def _start_mlflow(self, stores: SharedStores) -> str:
        port = free_port()
        env = {**os.environ, **AWS_KEYS, "MLFLOW_S3_ENDPOINT_URL": stores.s3_url}
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
             stores.postgres_url("mlflow"), "--artifacts-destination", f"s3://{BUCKET}/mlflow",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self.processes.append(server)
        url = f"http://127.0.0.1:{port}"
        wait_for_url(f"{url}/health", server, 180, "the MLflow server")
        return url

    def stop(self) -> None:
        for process in self.processes:
            try:
                os.killpg(process.pid, 15)  # each server leads its own session: its workers go with it
            except ProcessLookupError:
                continue
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.pg_ctl is not None and self.pg_data is not None:
            subprocess.run(as_postgres_user([str(self.pg_ctl), "-D", str(self.pg_data), "-m", "immediate", "stop"]),
                           capture_output=True, timeout=60)
            shutil.rmtree(self.pg_data.parent, ignore_errors=True)
