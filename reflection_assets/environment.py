"""Every environment variable the project reads, in one table: the docs' configuration page and
`reflection-tuning --help` are rendered from it, and a test checks that the code reads no other.

The teacher's tuning variables (REFLECTION_TEACHER_CONCURRENCY, ..._DTYPE, ...) are the teacher resource's
fields and are declared there (`reflection_assets.defs.deployment.TEACHER_SETTINGS`), once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, default (markdown) and meaning (markdown)."""

    name: str
    default: str
    what: str


VARIABLES: tuple[Variable, ...] = (
    Variable("REFLECTION_DATA", "the embedded demo set", "dataset (file, folder, or hub name) for `make demo`"),
    Variable("REFLECTION_DATA_DIR", "`./data`", "runtime state: warehouse, MLflow store, exports, checkpoints"),
    Variable("REFLECTION_WAREHOUSE", "`data/warehouse.duckdb`", "the DuckDB file (one table per asset)"),
    Variable("REFLECTION_MODELS_DIR", "`data/models`", "de-quantized model cache"),
    Variable("REFLECTION_INBOX", "`data/inbox`", "folder watched by `inbox_sensor`"),
    Variable(
        "MLFLOW_TRACKING_URI", "`sqlite:///data/mlflow.db`", "MLflow store (a server's URL: runs and artifacts there)"
    ),
    Variable(
        "REFLECTION_STORAGE",
        "`local`",
        "state: `local` (one DuckDB file) or `shared` (asset tables as Delta Lake tables on an object store, caches "
        "and registries in Postgres; "
        "[Past one machine](deployment.md#the-shared-stores-tested-on-loopback))",
    ),
    Variable("REFLECTION_TABLES_URI", "(required when shared)", "the Delta tables' root, e.g. `s3://bucket/tables`"),
    Variable(
        "REFLECTION_STORE_URL",
        "(required when shared)",
        "the Postgres database of the caches and registries, e.g. `postgresql://reflection@db:5432/reflection` "
        "(the password in `PGPASSWORD`)",
    ),
    Variable(
        "REFLECTION_FILES_URI",
        "(required when shared)",
        "the checkpoints' and exports' root on the object store, e.g. `s3://bucket/files`",
    ),
    Variable(
        "REFLECTION_S3_ENDPOINT_URL",
        "(unset: AWS S3)",
        "an S3-compatible store's URL (MinIO, Ceph, ...) for the tables; credentials from the standard `AWS_*` "
        "variables",
    ),
    Variable(
        "REFLECTION_STUDENT",
        "`bundled`",
        "student model: `bundled`, a `.gguf` file, a local directory or a Hugging Face id",
    ),
    Variable(
        "REFLECTION_STUDENT_BASE_URL",
        "(unset: in-process student)",
        "a vLLM server's `/v1` URL: scoring and evaluation run there "
        "([vLLM as the student](vllm.md#vllm-as-the-student))",
    ),
    Variable("REFLECTION_STUDENT_MODEL", "(required with a base URL)", "the student's served name"),
    Variable(
        "REFLECTION_STUDENT_API_KEY",
        "(unset)",
        "secret; read at run time through `dg.EnvVar`, never logged, stored or sent to MLflow",
    ),
    Variable(
        "REFLECTION_STUDENT_CONCURRENCY",
        "`8`",
        "the student client's requests in flight (the teacher's retry policy, one owner: "
        "`reflection_assets/http_retries.py`)",
    ),
    Variable("REFLECTION_STUDENT_TIMEOUT_S", "`120.0`", "the student client's timeout of one request"),
    Variable("REFLECTION_STUDENT_MAX_ATTEMPTS", "`5`", "the student client's attempts per request, the first included"),
    Variable(
        "REFLECTION_STUDENT_LOGPROB_CONCURRENCY",
        "`1`",
        "prompt log-probability requests in flight; raise it only for a server started without `--enable-lora` "
        "([vLLM as the student](vllm.md#vllm-as-the-student))",
    ),
    Variable(
        "REFLECTION_TEACHER_BASE_URL",
        "(unset: in-process teacher)",
        "OpenAI-compatible server, e.g. `http://127.0.0.1:8000/v1` (vLLM, Ollama, llama.cpp, `transformers serve`, "
        "OpenAI)",
    ),
    Variable(
        "REFLECTION_TEACHER_MODEL",
        "`bundled` in-process",
        "the served model name (required with a base URL), or the in-process model reference",
    ),
    Variable(
        "REFLECTION_TEACHER_API_KEY",
        "(unset)",
        "secret; read at run time through `dg.EnvVar`, never logged, stored or sent to MLflow",
    ),
    Variable(
        "REFLECTION_JUDGE_BASE_URL",
        "(unset: the teacher judges)",
        "the pairwise judge's own OpenAI-compatible server (with `REFLECTION_JUDGE_MODEL`)",
    ),
    Variable("REFLECTION_JUDGE_MODEL", "(unset)", "the judge's served name, or alone an in-process model reference"),
    Variable(
        "REFLECTION_JUDGE_API_KEY",
        "(unset)",
        "secret; read at run time through `dg.EnvVar`, never logged, stored or sent to MLflow",
    ),
    Variable(
        "REFLECTION_EVAL_FILE",
        "the demo's `demo_eval.jsonl`",
        "held-out pairs for `eval_scores` (jsonl: `instruction`/`input`/`output` or `question`/`answer`)",
    ),
    Variable(
        "REFLECTION_EXECUTOR",
        "`multiprocess`",
        "how runs execute their steps: `multiprocess` (each step its own process, forked from a server that imported "
        "the code location once; a crash stays in its step) or `in_process` (every step in the run's process: no "
        "process start and torch import per step, for a small machine)",
    ),
    Variable(
        "REFLECTION_SENSOR_INTERVAL_S",
        "`30`",
        "seconds between ticks of `inbox_sensor` and `automation_sensor` (the daemon evaluates sensors every 5 s at "
        "most)",
    ),
    Variable(
        "REFLECTION_EVAL_CRON",
        "(unset: schedule stopped)",
        "cron of `evaluation_schedule`, which re-runs `eval_scores` and `ablation_report`",
    ),
    Variable(
        "REFLECTION_DECONTAMINATE",
        "(unset: the evaluation's items only)",
        'benchmark files every export is decontaminated against, comma-separated; each '
        '`.jsonl`/`.json`/`.parquet`/`.csv`, its text field detected (`question`, `prompt`, `instruction`, '
        '`problem`, `query`, `input`, `text`, `content`) or named as `path::field` ([Exports](exports.md))',
    ),
    Variable(
        "REFLECTION_DECONTAMINATE_NGRAM",
        "`13`",
        "words per n-gram of the exports' decontamination and of `eval_scores`' contamination check (one setting, "
        "one implementation: `reflection_assets/ngrams.py`)",
    ),
    Variable(
        "DAGSTER_HOME",
        "the repo root (set by `make`)",
        "the Dagster instance: run history, event logs, schedules, sensors",
    ),
    Variable(
        "REFLECTION_TRAIN_REPORT_DIR",
        "(set by the launcher)",
        "internal: where each process of a launched training writes its report for the Dagster step",
    ),
)


def environment_markdown() -> str:
    """The table as markdown (the docs' configuration page)."""
    lines = ["| variable | default | what |", "| --- | --- | --- |"]
    lines += [f"| `{v.name}` | {v.default} | {v.what} |" for v in VARIABLES]
    return "\n".join(lines)


def environment_help() -> str:
    """The variables' names and defaults, for `reflection-tuning --help` (the meaning is on the docs page)."""
    names = [f"  {v.name}  (default: {v.default.replace('`', '')})" for v in VARIABLES]
    tuning = "  and the teacher's tuning, REFLECTION_TEACHER_CONCURRENCY ... (the teacher settings table there)"
    return "environment variables (docs/configuration.md says what each does):\n" + "\n".join([*names, tuning])


def variable_names() -> set[str]:
    return {v.name for v in VARIABLES}
