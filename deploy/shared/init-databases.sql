-- One Postgres server, three databases: the Dagster instance, the MLflow server, the caches and registries.
CREATE DATABASE dagster;
CREATE DATABASE mlflow;
CREATE DATABASE reflection;
